/* The lab's benign allocation spike, as fast as the guest can fault memory in.
 * Runs INSIDE the qemu guest only (never on the host); built on the host with cc like
 * labprobe.c and shipped through the 9p share.
 *
 *     labspike [FRACTION] [--madvise|--nohuge] [--populate] [--memset]
 *
 * mmaps FRACTION (default 0.90) of MemTotal anonymous, 2 MiB aligned so that transparent
 * huge pages can back all of it (a fault then maps 2 MiB at a time: far fewer page-fault
 * round trips under TCG), writes one byte in every 4 KiB page once, prints one JSON mark
 * line like workloads.py's mark(), {"mono": CLOCK_MONOTONIC seconds, "text": ..., "bytes",
 * "secs", "anon_huge_kb", "thp_enabled", "thp_defrag", ...}, and exits at once, which frees
 * it all.
 *
 * The lab guest's kernel (Debian 6.1) has THP enabled=always, defrag=madvise: the range gets
 * huge pages without asking whenever free 2 MiB blocks exist. --madvise adds
 * madvise(MADV_HUGEPAGE), which with defrag=madvise also makes every fault compact memory
 * directly for a huge page (counted as memory stall); --nohuge forbids huge pages
 * (MADV_NOHUGEPAGE). --populate faults the range in with MADV_POPULATE_WRITE (the kernel's
 * zero-fill is the write) instead of the touch loop; --memset writes every byte.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096UL
#define HUGE (2UL << 20)

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long kb_field(const char *path, const char *key)
{
	char line[256];
	size_t k = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, k) && line[k] == ':') {
			v = atol(line + k + 1);
			break;
		}
	fclose(f);
	return v;
}

/* The selected mode of a sysfs choice file, "always [madvise] never" -> "madvise". */
static void sys_choice(const char *path, char *out, size_t n)
{
	char buf[256] = "";
	FILE *f = fopen(path, "r");
	snprintf(out, n, "?");
	if (!f)
		return;
	if (fgets(buf, sizeof buf, f)) {
		char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;
		if (a && b) {
			*b = 0;
			snprintf(out, n, "%s", a + 1);
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	double frac = 0.90;
	int huge = 0, populate = 0, use_memset = 0; /* huge: 1 MADV_HUGEPAGE, -1 MADV_NOHUGEPAGE */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--madvise"))
			huge = 1;
		else if (!strcmp(argv[i], "--nohuge"))
			huge = -1;
		else if (!strcmp(argv[i], "--populate"))
			populate = 1;
		else if (!strcmp(argv[i], "--memset"))
			use_memset = 1;
		else if (atof(argv[i]) > 0 && atof(argv[i]) < 1)
			frac = atof(argv[i]);
		else {
			fprintf(stderr, "usage: labspike [FRACTION] [--madvise|--nohuge] [--populate] [--memset]\n");
			return 2;
		}
	}
	long total_kb = kb_field("/proc/meminfo", "MemTotal");
	if (total_kb <= 0)
		return 1;
	size_t n = (size_t)(total_kb * 1024.0 * frac) / PAGE * PAGE;
	char en[32], df[32];
	sys_choice("/sys/kernel/mm/transparent_hugepage/enabled", en, sizeof en);
	sys_choice("/sys/kernel/mm/transparent_hugepage/defrag", df, sizeof df);

	double t0 = mono();
	/* Over-map by 2 MiB and align, so that every 2 MiB of the range can be one huge page. */
	char *raw = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	char *p = (char *)(((unsigned long)raw + HUGE - 1) & ~(HUGE - 1));
	int madv = huge ? madvise(p, n, huge > 0 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) : 0;
	int prc = 0;
	if (populate) /* fault it all in, writable: the kernel's zero-fill is the one write per page */
		prc = madvise(p, n, MADV_POPULATE_WRITE);
	double t1 = mono();
	if (use_memset)
		memset(p, 1, n);
	else if (!populate) /* once only: a second pass would pull back what the first pushed out */
		for (size_t off = 0; off < n; off += PAGE)
			p[off] = 1;
	double t2 = mono();
	long huge_kb = kb_field("/proc/self/smaps_rollup", "AnonHugePages");
	long rss_kb = kb_field("/proc/self/status", "VmRSS");
	long swap_kb = kb_field("/proc/self/status", "VmSwap");
	printf("{\"mono\": %.6f, \"text\": \"spike allocated and touched\", \"bytes\": %zu, \"secs\": %.3f, "
	       "\"populate_secs\": %.3f, \"touch_secs\": %.3f, \"anon_huge_kb\": %ld, \"rss_kb\": %ld, "
	       "\"swap_kb\": %ld, \"thp_enabled\": \"%s\", \"thp_defrag\": \"%s\", \"madvise\": \"%s\", "
	       "\"madvise_rc\": %d, \"populate\": %d, \"populate_rc\": %d, \"memset\": %d}\n",
	       t2, n, t2 - t0, t1 - t0, t2 - t1, huge_kb, rss_kb, swap_kb, en, df,
	       huge > 0 ? "hugepage" : huge < 0 ? "nohugepage" : "none", madv, populate, prc, use_memset);
	fflush(stdout);
	return 0; /* exiting frees it */
}
