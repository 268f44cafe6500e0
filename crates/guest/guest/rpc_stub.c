/*
 * tandem-rpc: the portmapper and status monitor a test guest's kernel
 * needs to lock files over NFS (mounts without `nolock`). Debian's
 * rpcbind and rpc.statd are dynamic and want a whole system; this serves
 * just what the kernel and a Tandem server ask for, on port 111 (TCP and
 * UDP, every address: the server finds the guest's lock manager here to
 * send GRANTED).
 *
 * Portmapper (100000, versions 2, 3 and 4): the kernel registers lockd
 * with rpcbind v4 SET (falling back to v2 SET) over TCP to 127.0.0.1, and
 * the server asks for lockd with v2 GETPORT; SET/UNSET always answer true
 * and fill a small table that GETPORT and DUMP read. Versions 3/4 GETADDR
 * answer "" (not registered): only IPv6 lookups use them.
 *
 * Status monitor (100024 v1), served on port 111 as well and registered
 * there: the kernel's lockd calls SM_MON before its first lock on a server
 * and fails the lock ("lockd: cannot monitor") unless it succeeds. Nothing
 * is really monitored (a guest never reboots within a test), so every
 * call succeeds with one odd ("up") state number.
 *
 * usage: tandem-rpc (stays in the foreground; errors to stderr)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PMAP_PROG 100000u
#define SM_PROG 100024u
#define PORT 111
#define MAX_MAPPINGS 128
#define MAX_CONNS 32
/* Calls here are a few hundred bytes; anything larger is not for us. */
#define MAX_MSG 8192
#define SM_STATE 3

struct mapping { uint32_t prog, vers, prot, port; };
static struct mapping table[MAX_MAPPINGS];
static int nmap;

/* XDR reader over one call's bytes; `bad` is set on a short read. */
struct rd { const uint8_t *p; size_t left; int bad; };
static uint32_t get32(struct rd *r)
{
    if (r->left < 4) { r->bad = 1; return 0; }
    uint32_t v = ((uint32_t)r->p[0] << 24) | (r->p[1] << 16) | (r->p[2] << 8) | r->p[3];
    r->p += 4; r->left -= 4;
    return v;
}
/* An opaque/string: copies up to cap-1 bytes (NUL-terminated) into out. */
static void getstr(struct rd *r, char *out, size_t cap)
{
    uint32_t n = get32(r), padded = (n + 3) & ~3u;
    if (r->bad || n > r->left || padded > r->left) { r->bad = 1; out[0] = 0; return; }
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(out, r->p, c); out[c] = 0;
    r->p += padded; r->left -= padded;
}

struct wr { uint8_t b[MAX_MSG]; size_t n; };
static void put32(struct wr *w, uint32_t v)
{
    if (w->n + 4 > sizeof w->b) return;
    w->b[w->n++] = v >> 24; w->b[w->n++] = v >> 16; w->b[w->n++] = v >> 8; w->b[w->n++] = v;
}

static void set(uint32_t prog, uint32_t vers, uint32_t prot, uint32_t port)
{
    for (int i = 0; i < nmap; i++)
        if (table[i].prog == prog && table[i].vers == vers && table[i].prot == prot) {
            table[i].port = port;
            return;
        }
    if (nmap < MAX_MAPPINGS) table[nmap++] = (struct mapping){prog, vers, prot, port};
}

static void unset(uint32_t prog, uint32_t vers)
{
    for (int i = 0; i < nmap;)
        if (table[i].prog == prog && table[i].vers == vers) table[i] = table[--nmap];
        else i++;
}

/* rpcbind v3/v4 name transports by netid and ports by "a.b.c.d.hi.lo". */
static void set_v4(uint32_t prog, uint32_t vers, const char *netid, const char *uaddr)
{
    uint32_t prot = strcmp(netid, "tcp") == 0 ? 6 : strcmp(netid, "udp") == 0 ? 17 : 0;
    const char *lo = strrchr(uaddr, '.');
    if (prot == 0 || lo == NULL || lo == uaddr) return; /* IPv6: not looked up */
    const char *hi = lo - 1;
    while (hi > uaddr && hi[-1] != '.') hi--;
    set(prog, vers, prot, (uint32_t)atoi(hi) * 256 + (uint32_t)atoi(lo + 1));
}

/* Answers one call (the bytes after any record mark); 0: no reply. */
static size_t handle(const uint8_t *msg, size_t len, struct wr *w)
{
    struct rd r = {msg, len, 0};
    uint32_t xid = get32(&r), type = get32(&r), rpcvers = get32(&r);
    uint32_t prog = get32(&r), vers = get32(&r), proc = get32(&r);
    char skip[512];
    get32(&r); getstr(&r, skip, sizeof skip); /* credential */
    get32(&r); getstr(&r, skip, sizeof skip); /* verifier */
    if (r.bad || type != 0 || rpcvers != 2) return 0;
    w->n = 0;
    put32(w, xid); put32(w, 1); put32(w, 0); put32(w, 0); put32(w, 0);
    size_t stat_at = w->n;
    put32(w, 0); /* SUCCESS, patched below */
    uint32_t stat = 0;
    if (prog == PMAP_PROG && vers == 2) {
        uint32_t m[4] = {0};
        if (proc >= 1 && proc <= 3) for (int i = 0; i < 4; i++) m[i] = get32(&r);
        switch (proc) {
        case 0: break;
        case 1: set(m[0], m[1], m[2], m[3]); put32(w, 1); break;
        case 2: unset(m[0], m[1]); put32(w, 1); break;
        case 3: {
            uint32_t port = 0;
            for (int i = 0; i < nmap; i++)
                if (table[i].prog == m[0] && table[i].vers == m[1] && table[i].prot == m[2])
                    port = table[i].port;
            put32(w, port);
            break;
        }
        case 4:
            for (int i = 0; i < nmap; i++) {
                put32(w, 1);
                put32(w, table[i].prog); put32(w, table[i].vers);
                put32(w, table[i].prot); put32(w, table[i].port);
            }
            put32(w, 0);
            break;
        default: stat = 3; /* PROC_UNAVAIL */
        }
    } else if (prog == PMAP_PROG && (vers == 3 || vers == 4)) {
        char netid[64], uaddr[128], owner[64];
        uint32_t p = 0, v = 0;
        if (proc >= 1 && proc <= 3) {
            p = get32(&r); v = get32(&r);
            getstr(&r, netid, sizeof netid); getstr(&r, uaddr, sizeof uaddr);
            getstr(&r, owner, sizeof owner);
        }
        switch (proc) {
        case 0: break;
        case 1: if (!r.bad) set_v4(p, v, netid, uaddr); put32(w, 1); break;
        case 2: unset(p, v); put32(w, 1); break;
        case 3: put32(w, 0); break; /* "" */
        case 4: put32(w, 0); break; /* empty list */
        default: stat = 3;
        }
    } else if (prog == SM_PROG && vers == 1) {
        switch (proc) {
        case 0: case 5: case 6: break;
        case 1: case 2: put32(w, 0); put32(w, SM_STATE); break; /* STAT_SUCC */
        case 3: case 4: put32(w, SM_STATE); break;
        default: stat = 3;
        }
    } else if (prog == PMAP_PROG || prog == SM_PROG) {
        stat = 2; /* PROG_MISMATCH */
        put32(w, prog == PMAP_PROG ? 2 : 1);
        put32(w, prog == PMAP_PROG ? 4 : 1);
    } else {
        stat = 1; /* PROG_UNAVAIL */
    }
    if (r.bad) { stat = 4; w->n = stat_at + 4; } /* GARBAGE_ARGS */
    w->b[stat_at + 3] = (uint8_t)stat;
    return w->n;
}

static int listen_on(int type)
{
    int s = socket(AF_INET, type, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (s < 0) return -1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    if (type == SOCK_STREAM && listen(s, 16) != 0) return -1;
    return s;
}

struct conn { int fd; size_t have; uint8_t buf[MAX_MSG + 4]; };

int main(void)
{
    static struct conn conns[MAX_CONNS];
    static struct wr w;
    int tcp = listen_on(SOCK_STREAM), udp = listen_on(SOCK_DGRAM);
    if (tcp < 0 || udp < 0) { perror("tandem-rpc: port 111"); return 1; }
    set(PMAP_PROG, 2, 6, PORT); set(PMAP_PROG, 2, 17, PORT);
    set(SM_PROG, 1, 6, PORT); set(SM_PROG, 1, 17, PORT);
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    for (;;) {
        struct pollfd fds[MAX_CONNS + 2];
        int idx[MAX_CONNS + 2], n = 0;
        fds[n] = (struct pollfd){tcp, POLLIN, 0}; idx[n++] = -1;
        fds[n] = (struct pollfd){udp, POLLIN, 0}; idx[n++] = -2;
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].fd >= 0) { fds[n] = (struct pollfd){conns[i].fd, POLLIN, 0}; idx[n++] = i; }
        if (poll(fds, n, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
        for (int k = 0; k < n; k++) {
            if (!fds[k].revents) continue;
            if (idx[k] == -1) {
                int fd = accept(tcp, NULL, NULL), i;
                if (fd < 0) continue;
                for (i = 0; i < MAX_CONNS && conns[i].fd >= 0; i++) {}
                if (i == MAX_CONNS) { close(fd); continue; }
                conns[i].fd = fd; conns[i].have = 0;
            } else if (idx[k] == -2) {
                uint8_t in[MAX_MSG];
                struct sockaddr_in from;
                socklen_t flen = sizeof from;
                ssize_t got = recvfrom(udp, in, sizeof in, 0, (struct sockaddr *)&from, &flen);
                size_t out = got > 0 ? handle(in, (size_t)got, &w) : 0;
                if (out) sendto(udp, w.b, out, 0, (struct sockaddr *)&from, flen);
            } else {
                /* One record of one fragment at a time: the kernel and
                 * Tandem send each call whole. */
                struct conn *c = &conns[idx[k]];
                ssize_t got = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
                if (got <= 0) { close(c->fd); c->fd = -1; continue; }
                c->have += (size_t)got;
                while (c->have >= 4) {
                    uint32_t mark = ((uint32_t)c->buf[0] << 24) | (c->buf[1] << 16) | (c->buf[2] << 8) | c->buf[3];
                    size_t flen = mark & 0x7fffffffu;
                    if (!(mark & 0x80000000u) || flen > MAX_MSG) { close(c->fd); c->fd = -1; break; }
                    if (c->have < 4 + flen) break;
                    size_t out = handle(c->buf + 4, flen, &w);
                    if (out) {
                        uint8_t hdr[4] = {0x80, out >> 16, out >> 8, out};
                        if (write(c->fd, hdr, 4) != 4 || write(c->fd, w.b, out) != (ssize_t)out) {
                            close(c->fd); c->fd = -1; break;
                        }
                    }
                    memmove(c->buf, c->buf + 4 + flen, c->have - 4 - flen);
                    c->have -= 4 + flen;
                }
            }
        }
    }
}
