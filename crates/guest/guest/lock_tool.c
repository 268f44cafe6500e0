/*
 * tandem-lock: POSIX byte-range locks (fcntl) for tests, which busybox
 * cannot take (its flock locks whole files). Write locks on [START,
 * START+LEN) of FILE (LEN 0: to the end):
 *
 *   tandem-lock test FILE START LEN   F_GETLK: "unlocked", or "locked
 *                                     PID START LEN" of a conflicting lock
 *   tandem-lock try  FILE START LEN   F_SETLK and release: exit 0 if it was
 *                                     free, 1 if held elsewhere
 *   tandem-lock hold FILE START LEN DIR
 *   tandem-lock wait FILE START LEN DIR
 *                                     F_SETLK (hold; exit 1 if held
 *                                     elsewhere) or F_SETLKW (wait), then
 *                                     create DIR/locked, keep the lock until
 *                                     DIR/release exists, unlock, create
 *                                     DIR/unlocked
 *
 * Other errors exit 2. The holders poll for DIR/release (a shell cannot
 * signal a lock-holding process it did not start any more simply), and
 * give up after MAX_HOLD_S.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HOLD_S 900

static int touch(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) { perror(path); return -1; }
    return close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 5 || ((!strcmp(argv[1], "hold") || !strcmp(argv[1], "wait")) && argc < 6)) {
        fprintf(stderr, "usage: tandem-lock test|try|hold|wait FILE START LEN [DIR]\n");
        return 2;
    }
    const char *cmd = argv[1], *file = argv[2];
    int fd = open(file, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { perror(file); return 2; }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = atoll(argv[3]), .l_len = atoll(argv[4])};
    if (!strcmp(cmd, "test")) {
        if (fcntl(fd, F_GETLK, &fl) != 0) { perror("F_GETLK"); return 2; }
        if (fl.l_type == F_UNLCK) printf("unlocked\n");
        else printf("locked %ld %lld %lld\n", (long)fl.l_pid, (long long)fl.l_start, (long long)fl.l_len);
        return 0;
    }
    int op = !strcmp(cmd, "wait") ? F_SETLKW : F_SETLK;
    if (fcntl(fd, op, &fl) != 0) {
        if (errno == EAGAIN || errno == EACCES) return 1;
        perror("F_SETLK");
        return 2;
    }
    if (!strcmp(cmd, "try")) return 0;
    if (touch(argv[5], "locked") != 0) return 2;
    char release[4096];
    snprintf(release, sizeof release, "%s/release", argv[5]);
    for (int i = 0; access(release, F_OK) != 0; i++) {
        if (i > MAX_HOLD_S * 10) { fprintf(stderr, "tandem-lock: never released\n"); return 2; }
        usleep(100000);
    }
    fl.l_type = F_UNLCK;
    if (fcntl(fd, F_SETLK, &fl) != 0) { perror("F_UNLCK"); return 2; }
    return touch(argv[5], "unlocked") == 0 ? 0 : 2;
}
