/* LD_PRELOAD shim for the lab's recorder: lock the process in memory before main()
 * (`thrashguard record` does not lock itself; the daemon does), then publish the
 * CLOCK_MONOTONIC time at which main() is about to start, so the guest runner can
 * place its own events on the trace's clock (the trace's t counts from main()).
 * Built on the host by run-scenario with the host's cc; host and guest are both bookworm. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

__attribute__((constructor)) static void lab_mlock(void) {
    int rc = mlockall(MCL_CURRENT | MCL_FUTURE);
    const char *path = getenv("LAB_T0_FILE");
    unsetenv("LD_PRELOAD");
    if (!path) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%lld.%09ld %d\n", (long long)ts.tv_sec, ts.tv_nsec, rc);
    fclose(f);
    rename(tmp, path);
}
