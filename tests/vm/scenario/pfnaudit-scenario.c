// SPDX-License-Identifier: GPL-2.0
/*
 * pfnaudit-scenario NAME [N] [AUDITOR-PID]: drives /dev/pfnaudit (tests/vm/module) through one misuse (or correct
 * use) of raw PFNs, so that pfn-auditor has something real to report. Every step is checked; a
 * failed step prints what failed and exits 1. `pfnaudit-scenario as-user UID PROG ARGS...` runs
 * PROG as that user (doctor without privileges). tests/vm/scenarios.toml says what each must produce.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <grp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../module/pfnaudit_uapi.h"

#define PAGES 4
#define PAGE 4096UL

static const char *scenario;
/* The auditor stopped by starve-auditor: continued again whatever happens. */
static pid_t stopped_parent;

static void die(const char *step)
{
	fprintf(stderr, "pfnaudit-scenario %s: %s failed: %s\n", scenario, step, strerror(errno));
	if (stopped_parent)
		kill(stopped_parent, SIGCONT);
	exit(1);
}

static int open_dev(void)
{
	int fd = open("/dev/pfnaudit", O_RDWR);

	if (fd < 0)
		die("open /dev/pfnaudit");
	return fd;
}

static void *map_dev(int fd, unsigned long pages)
{
	void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		die("mmap /dev/pfnaudit");
	return p;
}

/* Issues @cmd for [addr, addr + pages); returns the module's result (pages or -errno). */
static long req(int fd, unsigned long cmd, void *addr, unsigned long pages, int use_follow_pte, const char *step)
{
	struct pfnaudit_req r = { .addr = (unsigned long)addr, .npages = pages, .use_follow_pte = use_follow_pte };

	if (ioctl(fd, cmd, &r) < 0)
		die(step);
	return r.result;
}

static void unmap(void *p, unsigned long pages)
{
	if (munmap(p, pages * PAGE))
		die("munmap");
}

static void raw_pin_then(int use_follow_pte, unsigned long revoke_cmd)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	if (req(fd, PFNAUDIT_PIN_TRACKED, p, PAGES, use_follow_pte, "PIN_TRACKED") != PAGES)
		die("PIN_TRACKED (short)");
	req(fd, revoke_cmd, p, PAGES, 0, revoke_cmd == PFNAUDIT_REVOKE ? "REVOKE" : "ZAP");
	req(fd, PFNAUDIT_UNPIN_TRACKED, p, 0, 0, "UNPIN_TRACKED");
	unmap(p, PAGES);
	close(fd);
}

static void raw_pin_munmap(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	req(fd, PFNAUDIT_PIN_TRACKED, p, PAGES, 0, "PIN_TRACKED");
	unmap(p, PAGES);
	req(fd, PFNAUDIT_UNPIN_TRACKED, NULL, 0, 0, "UNPIN_TRACKED");
	close(fd);
}

static void lookup_revoke(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	req(fd, PFNAUDIT_LOOKUP_UNTRACKED, p, 2, 0, "LOOKUP_UNTRACKED");
	req(fd, PFNAUDIT_REVOKE, NULL, 0, 0, "REVOKE");
	unmap(p, PAGES);
	close(fd);
}

/* Pins and leaves: the address space is torn down at exit, the file released after it. */
static void pin_exit(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	req(fd, PFNAUDIT_PIN_TRACKED, p, PAGES, 0, "PIN_TRACKED");
	exit(0);
}

/* Pins and stays alive until killed (the guest stops the auditor first). */
static void pin_leak(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	req(fd, PFNAUDIT_PIN_TRACKED, p, 1, 0, "PIN_TRACKED");
	if (close(open("/tmp/scenario.ready", O_CREAT | O_WRONLY, 0644)))
		die("create /tmp/scenario.ready");
	for (;;)
		pause();
}

/* get_vaddr_frames() on the PFN map: 5.10 falls back to raw PFNs, later kernels refuse. */
static void frame_vector_pfnmap(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);
	struct pfnaudit_req r = { .addr = (unsigned long)p, .npages = PAGES };
	int ret = ioctl(fd, PFNAUDIT_PIN_FRAMES, &r);

	if (ret == 0) {
		printf("get_vaddr_frames returned %lld frames of the PFN map\n", (long long)r.result);
		req(fd, PFNAUDIT_UNPIN_FRAMES, NULL, 0, 0, "UNPIN_FRAMES");
	} else if (errno == EFAULT || errno == EINVAL || errno == EOPNOTSUPP) {
		printf("get_vaddr_frames refused the PFN map: %s\n", strerror(errno));
	} else {
		die("PIN_FRAMES");
	}
	unmap(p, PAGES);
	close(fd);
}

static void *anon_pages(unsigned long pages)
{
	char *a = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (a == MAP_FAILED)
		die("mmap anonymous");
	memset(a, 0x5a, pages * PAGE);
	return a;
}

static void frame_vector_munmap(void)
{
	int fd = open_dev();
	void *a = anon_pages(PAGES);

	if (req(fd, PFNAUDIT_PIN_FRAMES, a, PAGES, 0, "PIN_FRAMES") != PAGES)
		die("PIN_FRAMES (short)");
	unmap(a, PAGES);
	req(fd, PFNAUDIT_UNPIN_FRAMES, NULL, 0, 0, "UNPIN_FRAMES");
	close(fd);
}

/* A driver that does it right: every pin is given back before the mapping goes away. */
static void correct_use(void)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);
	void *a = anon_pages(PAGES);

	req(fd, PFNAUDIT_PIN_TRACKED, p, PAGES, 0, "PIN_TRACKED");
	req(fd, PFNAUDIT_UNPIN_TRACKED, NULL, 0, 0, "UNPIN_TRACKED");
	req(fd, PFNAUDIT_REVOKE, NULL, 0, 0, "REVOKE");
	req(fd, PFNAUDIT_PIN_FRAMES, a, PAGES, 0, "PIN_FRAMES");
	req(fd, PFNAUDIT_UNPIN_FRAMES, NULL, 0, 0, "UNPIN_FRAMES");
	unmap(a, PAGES);
	unmap(p, PAGES);
	close(fd);
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* A shared file mapping truncated up and down: unmap_mapping_range() on every shrink. */
static void truncate_storm(long n)
{
	int fd = open("/tmp/pfnaudit-truncate", O_RDWR | O_CREAT | O_TRUNC, 0644);
	char *p;

	if (fd < 0)
		die("open /tmp/pfnaudit-truncate");
	if (ftruncate(fd, 4 * PAGE))
		die("ftruncate");
	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap tmp file");
	for (long i = 0; i < n; i++) {
		p[0] = (char)i;
		if (ftruncate(fd, 0) || ftruncate(fd, 4 * PAGE))
			die("ftruncate");
	}
	munmap(p, 4 * PAGE);
	close(fd);
	unlink("/tmp/pfnaudit-truncate");
}

/* mmap/munmap of anonymous memory, /dev/zero and the PFN device (never pinned). */
static void mmap_storm(long n)
{
	int zero = open("/dev/zero", O_RDWR);
	int dev = open_dev();

	if (zero < 0)
		die("open /dev/zero");
	for (long i = 0; i < n; i++) {
		unmap(anon_pages(1), 1);
		void *z = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, zero, 0);
		if (z == MAP_FAILED)
			die("mmap /dev/zero");
		unmap(z, 1);
		unmap(map_dev(dev, 1), 1);
	}
	close(zero);
	close(dev);
}

static void pin_loop(long n)
{
	int fd = open_dev();
	void *p = map_dev(fd, PAGES);

	for (long i = 0; i < n; i++) {
		req(fd, PFNAUDIT_PIN_TRACKED, p, PAGES, 0, "PIN_TRACKED");
		req(fd, PFNAUDIT_UNPIN_TRACKED, NULL, 0, 0, "UNPIN_TRACKED");
	}
	unmap(p, PAGES);
	close(fd);
}

/*
 * Run under `pfn-auditor gate`: stops the auditor (our parent) so that it reads nothing meanwhile,
 * pins STORM_PAGES pages while the driver makes @n lookups from kernel stacks of their own after
 * each page (STORM_PAGES * @n distinct stacks, more than any stack table holds; none is a pin),
 * lets the auditor go on and revokes. The one finding must carry the pin's own stack: all pages
 * one pin of pfnaudit_pin_tracked. A record pointing into a shared stack table would by now point
 * at a storm stack: another holder, the pin split.
 */
#define STORM_PAGES 16
static void stack_storm(long n)
{
	int fd = open_dev();
	void *p = map_dev(fd, STORM_PAGES);
	struct pfnaudit_req r = { .addr = (unsigned long)p, .npages = STORM_PAGES, .storm = n };

	stopped_parent = getppid();
	if (kill(stopped_parent, SIGSTOP))
		die("SIGSTOP the auditor");
	if (ioctl(fd, PFNAUDIT_PIN_TRACKED, &r) < 0 || r.result != STORM_PAGES)
		die("PIN_TRACKED with a stack storm");
	if (kill(stopped_parent, SIGCONT))
		die("SIGCONT the auditor");
	stopped_parent = 0;
	req(fd, PFNAUDIT_REVOKE, NULL, 0, 0, "REVOKE");
	req(fd, PFNAUDIT_UNPIN_TRACKED, NULL, 0, 0, "UNPIN_TRACKED");
	unmap(p, STORM_PAGES);
	close(fd);
}

/*
 * Run under `pfn-auditor gate`: stops the auditor (our parent) so that it cannot drain, maps and
 * unmaps the PFN device @n times (three watched records each, no pin: no finding can come of it)
 * until the ring buffer overflows, then lets it go on. The gate must fail closed (exit 3).
 */
static void starve_auditor(long n)
{
	int dev = open_dev();

	stopped_parent = getppid();
	if (kill(stopped_parent, SIGSTOP))
		die("SIGSTOP the auditor");
	for (long i = 0; i < n; i++)
		unmap(map_dev(dev, 1), 1);
	if (kill(stopped_parent, SIGCONT))
		die("SIGCONT the auditor");
	stopped_parent = 0;
	close(dev);
}

/*
 * A storm for the daemon: @n rounds of map 64 pages of the PFN device, look each page up (64
 * raw-lookup records), release them, unmap (about 70 records a round: 15000 rounds make a
 * million). In the middle fifth of the rounds the auditor @auditor is stopped (SIGSTOP), so the
 * ring buffer overflows and records are dropped; it is continued for the rest, to drain.
 */
static void storm(long n, pid_t auditor)
{
	int fd = open_dev();

	for (long i = 0; i < n; i++) {
		if (auditor && i == 2 * n / 5) {
			stopped_parent = auditor;
			if (kill(auditor, SIGSTOP))
				die("SIGSTOP the auditor");
		}
		if (auditor && i == 3 * n / 5) {
			if (kill(auditor, SIGCONT))
				die("SIGCONT the auditor");
			stopped_parent = 0;
		}
		void *p = map_dev(fd, PFNAUDIT_MAX_PAGES);

		req(fd, PFNAUDIT_PIN_TRACKED, p, PFNAUDIT_MAX_PAGES, 0, "PIN_TRACKED");
		req(fd, PFNAUDIT_UNPIN_TRACKED, NULL, 0, 0, "UNPIN_TRACKED");
		unmap(p, PFNAUDIT_MAX_PAGES);
	}
	close(fd);
}

/* Runs @argv as user and group @uid, with no supplementary groups (busybox has no setpriv --reuid). */
static void as_user(uid_t uid, char **argv)
{
	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		die("dropping to the user");
	execvp(argv[0], argv);
	die("exec");
}

static void timed(void (*workload)(long), long n)
{
	unsigned long long t0 = now_ns();

	workload(n);
	printf("iterations=%ld\nelapsed_ns=%llu\n", n, now_ns() - t0);
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 2000;

	if (argc < 2) {
		fprintf(stderr, "usage: pfnaudit-scenario NAME [N]\n");
		return 2;
	}
	scenario = argv[1];
	if (!strcmp(scenario, "as-user") && argc > 3)
		as_user(atol(argv[2]), argv + 3);
	if (!strcmp(scenario, "raw-pin-revoke"))
		raw_pin_then(0, PFNAUDIT_REVOKE);
	else if (!strcmp(scenario, "raw-pin-revoke-follow-pte"))
		raw_pin_then(1, PFNAUDIT_REVOKE);
	else if (!strcmp(scenario, "raw-pin-zap"))
		raw_pin_then(0, PFNAUDIT_ZAP);
	else if (!strcmp(scenario, "raw-pin-munmap"))
		raw_pin_munmap();
	else if (!strcmp(scenario, "lookup-revoke"))
		lookup_revoke();
	else if (!strcmp(scenario, "pin-exit"))
		pin_exit();
	else if (!strcmp(scenario, "pin-leak"))
		pin_leak();
	else if (!strcmp(scenario, "frame-vector-pfnmap"))
		frame_vector_pfnmap();
	else if (!strcmp(scenario, "frame-vector-munmap"))
		frame_vector_munmap();
	else if (!strcmp(scenario, "correct-use"))
		correct_use();
	else if (!strcmp(scenario, "noise")) {
		truncate_storm(n);
		mmap_storm(n);
	} else if (!strcmp(scenario, "starve-auditor"))
		starve_auditor(n);
	else if (!strcmp(scenario, "stack-storm"))
		stack_storm(n);
	else if (!strcmp(scenario, "storm"))
		storm(n, argc > 3 ? atol(argv[3]) : 0);
	else if (!strcmp(scenario, "bench-truncate"))
		timed(truncate_storm, n);
	else if (!strcmp(scenario, "bench-mmap"))
		timed(mmap_storm, n);
	else if (!strcmp(scenario, "bench-pin"))
		timed(pin_loop, n);
	else {
		fprintf(stderr, "pfnaudit-scenario: unknown scenario %s\n", scenario);
		return 2;
	}
	printf("pfnaudit-scenario %s: ok\n", scenario);
	return 0;
}
