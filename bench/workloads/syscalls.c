// SPDX-License-Identifier: Apache-2.0
/*
 * syscalls.c: the overhead workloads of bench/overhead.py, one binary, one loop per mode.
 *
 *   syscalls MODE ITERATIONS [DELAY_MS]
 *
 *   openat    open("/etc/hostname", O_RDONLY) + close   (the openat flood)
 *   openatrel open("target", O_RDONLY) + close, relative to the cwd (the collector resolves
 *             the cwd in the kernel for every tracked relative open: bench/overhead.py runs it
 *             six directories below its work directory)
 *   forkexec  fork + execve("/bin/true") + waitpid     (the fork+exec loop)
 *   connect   TCP connect to a loopback listener + accept + close both (the connect loop)
 *   getppid   getppid()                                 (a syscall no probe watches: the floor)
 *   chmod     chmod(<cwd>/casa-bench-file, 0600 / 0644 alternately)   (absolute path)
 *   unlink    link(<cwd>/casa-bench-file, <cwd>/casa-bench-link) + unlink(the link)
 *             (link has no probe: the difference between modes is unlink's)
 *   sendto    UDP sendto of a 29-byte DNS query (example.com, A) to a loopback socket of its own,
 *             never read (the kernel drops what does not fit; sendto still succeeds): the
 *             collector's worst case, a datagram it reads and hands on for DNS parsing
 *
 * DELAY_MS (default 0) sleeps before the loop, so a monitor has time to confirm this process
 * as a tracked root before measurement starts. Prints one line:
 *   "<mode> <iterations> <loop wall ns> <loop cpu ns>"
 * Only the loop is timed, so process start-up and exec do not blur the ratios. Wall time is
 * CLOCK_MONOTONIC; CPU time is user + system time of this process and its waited-for children
 * (getrusage), which includes what probes cost in the syscalls but not time spent waiting for a
 * CPU that another process (a monitor's user space, or another tenant) holds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void)
{
	struct rusage self, children;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &children);
	return ((long long)self.ru_utime.tv_sec + self.ru_stime.tv_sec + children.ru_utime.tv_sec +
		children.ru_stime.tv_sec) * 1000000000LL +
	       ((long long)self.ru_utime.tv_usec + self.ru_stime.tv_usec + children.ru_utime.tv_usec +
		children.ru_stime.tv_usec) * 1000LL;
}

/* open(path, O_RDONLY) + close, n times (glibc's open is the openat syscall) */
static int open_close(long n, const char *path)
{
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			return fprintf(stderr, "open %s: ", path), perror(NULL), 1;
		close(fd);
	}
	return 0;
}

static int loop_openat(long n)
{
	return open_close(n, "/etc/hostname");
}

static int loop_openatrel(long n)
{
	return open_close(n, "target");
}

static int loop_forkexec(long n)
{
	static char *const argv[] = {"true", NULL};
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return perror("fork"), 1;
		if (pid == 0) {
			execv("/bin/true", argv);
			_exit(127);
		}
		int status;
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			return fprintf(stderr, "child /bin/true failed\n"), 1;
	}
	return 0;
}

static int listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)addr, sizeof(*addr)) || listen(l, 128) ||
	    getsockname(l, (struct sockaddr *)addr, &len))
		return perror("loopback listener"), -1;
	return l;
}

static int loop_connect(long n)
{
	struct sockaddr_in addr;
	int l = listener(&addr);
	if (l < 0)
		return 1;
	for (long i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)))
			return perror("connect"), 1;
		int a = accept(l, NULL, NULL);
		if (a < 0)
			return perror("accept"), 1;
		close(a);
		close(s);
	}
	close(l);
	return 0;
}

static int loop_getppid(long n)
{
	for (long i = 0; i < n; i++)
		if (getppid() < 0)
			return 1;
	return 0;
}

/* <cwd>/name into buf (the chmod and unlink loops use absolute paths, like the openat one) */
static int cwd_path(char *buf, size_t size, const char *name)
{
	size_t n;

	if (!getcwd(buf, size - strlen(name) - 2))
		return perror("getcwd"), -1;
	n = strlen(buf);
	snprintf(buf + n, size - n, "/%s", name);
	return 0;
}

static int bench_file(char *path, size_t size)
{
	int fd;

	if (cwd_path(path, size, "casa-bench-file"))
		return -1;
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	if (fd < 0)
		return perror("create casa-bench-file"), -1;
	close(fd);
	return 0;
}

static int loop_chmod(long n)
{
	char path[4096];

	if (bench_file(path, sizeof(path)))
		return 1;
	for (long i = 0; i < n; i++)
		if (chmod(path, (i & 1) ? 0644 : 0600))
			return perror("chmod"), 1;
	return 0;
}

static int loop_unlink(long n)
{
	char path[4096], link_path[4096];

	if (bench_file(path, sizeof(path)) || cwd_path(link_path, sizeof(link_path), "casa-bench-link"))
		return 1;
	unlink(link_path);
	for (long i = 0; i < n; i++) {
		if (link(path, link_path))
			return perror("link"), 1;
		if (unlink(link_path))
			return perror("unlink"), 1;
	}
	return 0;
}

static int loop_sendto(long n)
{
	/* a standard query for example.com, type A, class IN */
	static const unsigned char query[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
					      0x00, 0x00, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c',
					      'o', 'm', 0, 0x00, 0x01, 0x00, 0x01};
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&addr, sizeof(addr)) ||
	    getsockname(rx, (struct sockaddr *)&addr, &len))
		return perror("loopback UDP socket"), 1;
	for (long i = 0; i < n; i++)
		if (sendto(tx, query, sizeof(query), 0, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			return perror("sendto"), 1;
	close(tx);
	close(rx);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s openat|openatrel|forkexec|connect|getppid|chmod|unlink|sendto "
			"ITERATIONS [DELAY_MS]\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	if (argc > 3)
		usleep(atoi(argv[3]) * 1000);
	int (*loop)(long) = !strcmp(argv[1], "openat")   ? loop_openat :
			    !strcmp(argv[1], "openatrel") ? loop_openatrel :
			    !strcmp(argv[1], "forkexec") ? loop_forkexec :
			    !strcmp(argv[1], "connect")  ? loop_connect :
			    !strcmp(argv[1], "getppid")  ? loop_getppid :
			    !strcmp(argv[1], "chmod")    ? loop_chmod :
			    !strcmp(argv[1], "unlink")   ? loop_unlink :
			    !strcmp(argv[1], "sendto")   ? loop_sendto : NULL;
	if (!loop || n <= 0) {
		fprintf(stderr, "%s: unknown mode %s or bad iteration count\n", argv[0], argv[1]);
		return 2;
	}
	long long c0 = cpu_ns(), t0 = now_ns();
	int rc = loop(n);
	long long t1 = now_ns(), c1 = cpu_ns();
	if (rc)
		return rc;
	printf("%s %ld %lld %lld\n", argv[1], n, t1 - t0, c1 - c0);
	return 0;
}
