/*
 * mount.nfs for test guests: busybox's mount runs it when mount(2) of an
 * "nfs" file system fails, which it does without addr=. The kernel parses
 * NFS mount options itself (and speaks MOUNT and NFS), so all this adds is
 * the server's address, taken from "HOST:/PATH" (an IPv4 address: guests
 * have no resolver).
 *
 * usage: mount.nfs HOST:/PATH DIR [-o OPTIONS] [-r] [-w] [-v] [-n] [-s] [-f] [-i]
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#define MAX_OPTIONS 3072

static int has_addr(const char *opts)
{
    /* addr= at the start or after a comma (mountaddr= does not count). */
    return strncmp(opts, "addr=", 5) == 0 || strstr(opts, ",addr=") != NULL;
}

int main(int argc, char **argv)
{
    const char *opts = "";
    unsigned long flags = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: mount.nfs HOST:/PATH DIR [-o OPTIONS]\n");
        return 2;
    }
    const char *spec = argv[1], *dir = argv[2];
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            opts = argv[++i];
        else if (strcmp(argv[i], "-r") == 0)
            flags |= MS_RDONLY;
    }
    const char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec || colon[1] != '/') {
        fprintf(stderr, "mount.nfs: %s is not HOST:/PATH\n", spec);
        return 2;
    }
    char data[MAX_OPTIONS + 64];
    int n;
    if (has_addr(opts))
        n = snprintf(data, sizeof data, "%s", opts);
    else
        n = snprintf(data, sizeof data, "%s%saddr=%.*s", opts, *opts ? "," : "",
                     (int)(colon - spec), spec);
    if (n < 0 || (size_t)n >= sizeof data || strlen(opts) > MAX_OPTIONS) {
        fprintf(stderr, "mount.nfs: options too long\n");
        return 2;
    }
    if (mount(spec, dir, "nfs", flags, data) != 0) {
        fprintf(stderr, "mount.nfs: mount %s on %s (%s): %s\n", spec, dir, data, strerror(errno));
        return 32;
    }
    return 0;
}
