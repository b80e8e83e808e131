/* Latency probe for the thrash lab: a small user program that wants to run every 100 ms.
 * Runs INSIDE the qemu guest only; built on the host by run-scenario with the host's cc
 * (host and guest are both bookworm). NOT locked in memory, oom_score_adj left as started
 * (0): it models an ordinary program, so its stalls are what a user would feel.
 *
 *     labprobe tiny|interactive OUTFILE
 *
 * tiny:        every 100 ms: read /etc/hostname, write one byte in each page of 64 KiB.
 * interactive: holds 100 MiB (written once at start); every 100 ms: read /etc/hostname,
 *              write one byte in each page of a random 1 MiB part of it.
 *
 * Ticks are scheduled at start + k * 100 ms (CLOCK_MONOTONIC, absolute sleeps). A tick's
 * latency is measured from its *scheduled* instant to the end of its work, so time lost
 * before the probe even ran (not scheduled, faulting its own code back in) counts. Ticks
 * whose schedule has already passed when a tick ends are not run (no catch-up burst): the
 * reader adds them back with the expected-interval correction (wrk2 / HdrHistogram:
 * latencies L-100, L-200, ... ms). One line per tick, written after it is measured:
 * "SCHEDULED_MONO_S LATENCY_MS". First line: "# labprobe MODE pid PID start MONO".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MiB (1024L * 1024L)
#define INTERVAL_NS 100000000L

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) { t->tv_nsec -= 1000000000L; t->tv_sec++; }
}

static double ts_s(const struct timespec *t) { return t->tv_sec + t->tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "tiny") && strcmp(argv[1], "interactive"))) {
        fprintf(stderr, "usage: labprobe tiny|interactive OUTFILE\n");
        return 2;
    }
    int interactive = !strcmp(argv[1], "interactive");
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (out < 0) { perror(argv[2]); return 1; }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    size_t size = interactive ? 100 * MiB : 64 * 1024;
    unsigned char *buf = malloc(size);
    if (!buf) { perror("malloc"); return 1; }
    memset(buf, 0x5a, size); /* resident, and not the shared zero page */
    unsigned int seed = (unsigned int)getpid();

    char line[128];
    int n = snprintf(line, sizeof line, "# labprobe %s pid %d start %.6f\n", argv[1], (int)getpid(), mono());
    if (write(out, line, n) < 0) return 1;

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    unsigned char k = 0;
    while (!stop) {
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (stop) break;
        /* the work */
        char host[256];
        int fd = open("/etc/hostname", O_RDONLY);
        if (fd >= 0) { if (read(fd, host, sizeof host) < 0) host[0] = 0; close(fd); }
        size_t off = 0, len = size;
        if (interactive) {
            len = MiB;
            off = (size_t)(rand_r(&seed) % (int)(size / MiB)) * MiB;
        }
        k++;
        for (size_t p = off; p < off + len; p += PAGE) buf[p] = k;
        double end = mono();
        double sched = ts_s(&next);
        n = snprintf(line, sizeof line, "%.6f %.3f\n", sched, (end - sched) * 1e3);
        if (write(out, line, n) < 0) return 1;
        /* the next tick still ahead of us (missed ones are not run; the reader adds them) */
        add_ns(&next, INTERVAL_NS);
        double now = mono();
        while (ts_s(&next) < now) add_ns(&next, INTERVAL_NS);
    }
    close(out);
    return 0;
}
