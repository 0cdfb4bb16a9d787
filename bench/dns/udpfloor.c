/* bench/dns/udpfloor.c: the cost floor of a UDP DNS server on this kernel.
 *
 * Answers every datagram on ADDR:PORT with the datagram itself, QR bit set (a NOERROR
 * response with no records), in batches of up to 64 with recvmmsg/sendmmsg: what any
 * server built on sockets must do per query, and nothing else. bench/dns/run.sh measures
 * its CPU per query beside gdnsd's and the router's, so the share of a query's cost that
 * no user-space work can remove is measured, not guessed.
 *
 * usage: udpfloor ADDR PORT     (IPv4; runs until killed)
 * Build: cc -O2 -o udpfloor udpfloor.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MAXPKT 4096

int main(int argc, char **argv)
{
    static char bufs[BATCH][MAXPKT];
    struct sockaddr_in peers[BATCH], sa = {.sin_family = AF_INET};
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    char *end;

    if (argc != 3) {
        fprintf(stderr, "usage: udpfloor ADDR PORT\n");
        return 2;
    }
    long port = strtol(argv[2], &end, 10);
    if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "udpfloor: bad address or port '%s' '%s'\n", argv[1], argv[2]);
        return 2;
    }
    sa.sin_port = htons((unsigned short)port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "udpfloor: bind %s:%ld: %s\n", argv[1], port, strerror(errno));
        return 1;
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], MAXPKT};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &peers[i],
                                              .msg_namelen = sizeof(peers[i]),
                                              .msg_iov = &iov[i],
                                              .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "udpfloor: recvmmsg: %s\n", strerror(errno));
            return 1;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_len < 12)
                continue; /* not a DNS header: dropped */
            bufs[i][2] |= (char)0x80; /* QR: a response */
            iov[i].iov_len = msgs[i].msg_len;
            if (m != i)
                msgs[m] = msgs[i];
            m++;
        }
        for (int k = 0; k < m;) {
            int s = sendmmsg(fd, msgs + k, (unsigned)(m - k), 0);
            if (s < 0) {
                if (errno == EINTR)
                    continue;
                break; /* a full socket buffer drops the rest, as a server would */
            }
            k += s;
        }
    }
}
