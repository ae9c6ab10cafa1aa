/* Open-loop FastAGI `route` load in C: Asterisk's side of each call, as
 * tests/bench/agi_load.py plays it, for a fraction of that generator's CPU.
 *
 * Bench only (bench_ceiling --generator c). agi_load.compile_generator builds it with the
 * system's C compiler; agi_load.run_c writes the calls and reads the results.
 *
 *     agi_gen RATE WITHIN ROUTE_VAR < calls
 *
 * stdin: the calls in order, each "PORT LENGTH\n" and LENGTH bytes of request header.
 * Call n starts at n / RATE s (one epoll loop; due calls started every millisecond):
 * connect to 127.0.0.1:PORT, write the header, answer every command line
 * "200 result=0\n", and end when the server closes. A call is routed when a command line
 * sets ROUTE_VAR to a non-empty value (EXEC MSet "...,ROUTE_VAR=x,..." or
 * SET VARIABLE ROUTE_VAR x), as agi_load.routed reads it.
 *
 * stdout: one line a call, in the order the calls ended:
 * "START LATENCY_MS OK" (START in s since the first start, OK 1 routed, 0 not) and last
 * "left N T0": the calls not ended WITHIN s after the last start (errors), and the
 * first start on the monotonic clock (Python's time.monotonic and perf_counter).
 * The latency runs from just before socket() to the server's close seen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

struct call {
    int port;
    size_t length;
    char *header;
};

struct conn {
    int call;  /* index into calls, -1 when free */
    int routed;
    int connected;
    double started;
    size_t have;
    char line[LINE_MAX_BYTES];
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *route_var;
static size_t route_len;

/* Whether one command line (no newline) sets route_var to a non-empty value. */
static int routed(const char *line, size_t n) {
    static const char set_var[] = "SET VARIABLE ";
    size_t sl = sizeof set_var - 1;
    const char *end = line + n;
    for (const char *at = line; at + route_len < end; at++) {
        at = memmem(at, (size_t)(end - at), route_var, route_len);
        if (at == NULL || at + route_len >= end) break;
        if (at[route_len] != '=') continue;
        if (at != line && at[-1] != ' ' && at[-1] != ',' && at[-1] != '"') continue;
        const char *v = at + route_len + 1;
        while (v < end && (*v == '"' || *v == ' ')) v++;
        return v < end && *v != ',' && *v != '\r';
    }
    if (n > sl + route_len && memcmp(line, set_var, sl) == 0 &&
        memcmp(line + sl, route_var, route_len) == 0 && line[sl + route_len] == ' ') {
        const char *v = line + sl + route_len + 1;
        while (v < end && (*v == '"' || *v == ' ' || *v == '\r')) v++;
        return v < end;
    }
    return 0;
}

static struct call *read_calls(int *count) {
    int cap = 1024, n = 0;
    struct call *calls = malloc(sizeof *calls * (size_t)cap);
    int port;
    size_t length;
    while (scanf("%d %zu", &port, &length) == 2) {
        if (getchar() != '\n') break;
        if (n == cap) {
            cap *= 2;
            calls = realloc(calls, sizeof *calls * (size_t)cap);
        }
        calls[n].port = port;
        calls[n].length = length;
        calls[n].header = malloc(length);
        if (fread(calls[n].header, 1, length, stdin) != length) break;
        n++;
    }
    *count = n;
    return calls;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: agi_gen RATE WITHIN ROUTE_VAR < calls\n");
        return 2;
    }
    double rate = atof(argv[1]), within = atof(argv[2]);
    route_var = argv[3];
    route_len = strlen(route_var);
    int total;
    struct call *calls = read_calls(&total);
    if (total == 0 || rate <= 0) {
        printf("left 0 %.6f\n", now());
        return 0;
    }
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    int slots = (int)lim.rlim_cur;
    struct conn *conns = calloc((size_t)slots, sizeof *conns);
    for (int i = 0; i < slots; i++) conns[i].call = -1;
    int ep = epoll_create1(0), one = 1;
    struct epoll_event events[256];
    int sent = 0, ended = 0;
    double t0 = now(), last_start = 0;
    while (ended < total) {
        double t = now();
        if (sent < total) {
            int due = (int)((t - t0) * rate) + 1;
            if (due > total) due = total;
            for (; sent < due; sent++) {
                double started = now();
                struct sockaddr_in to = {.sin_family = AF_INET};
                to.sin_port = htons((unsigned short)calls[sent].port);
                to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                if (fd < 0 || fd >= slots) {
                    if (fd >= 0) close(fd);
                    printf("%.6f -1 0\n", started - t0);
                    ended++;
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct conn *c = &conns[fd];
                c->call = sent;
                c->routed = c->connected = 0;
                c->have = 0;
                c->started = started;
                if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) {
                    close(fd);
                    c->call = -1;
                    printf("%.6f -1 0\n", started - t0);
                    ended++;
                    continue;
                }
                struct epoll_event e = {.events = EPOLLOUT, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            }
            last_start = now();
        } else if (t - last_start > within) {
            break;
        }
        int n = epoll_wait(ep, events, 256, 1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            struct conn *c = &conns[fd];
            if (c->call < 0) continue;
            int failed = 0, done = 0;
            if (!c->connected) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    failed = 1;
                } else {
                    const struct call *k = &calls[c->call];
                    c->connected = 1;
                    if (write(fd, k->header, k->length) != (ssize_t)k->length) failed = 1;
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
                }
            } else {
                char buf[4096];
                ssize_t r = read(fd, buf, sizeof buf);
                if (r < 0 && errno == EAGAIN) continue;
                if (r < 0) failed = 1;
                if (r == 0) done = 1;
                for (ssize_t j = 0; j < r && !failed; j++) {
                    if (buf[j] != '\n') {
                        if (c->have < LINE_MAX_BYTES) c->line[c->have++] = buf[j];
                        continue;
                    }
                    if (routed(c->line, c->have)) c->routed = 1;
                    c->have = 0;
                    if (write(fd, "200 result=0\n", 13) != 13) failed = 1;
                }
            }
            if (failed || done) {
                double e = now();
                printf("%.6f %.3f %d\n", c->started - t0, (e - c->started) * 1e3,
                       done && c->routed ? 1 : 0);
                c->call = -1;
                close(fd);
                ended++;
            }
        }
    }
    printf("left %d %.6f\n", total - ended, t0);
    return 0;
}
