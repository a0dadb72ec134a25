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

static int loop_openat(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open("/etc/hostname", O_RDONLY);
		if (fd < 0)
			return perror("open /etc/hostname"), 1;
		close(fd);
	}
	return 0;
}

static int loop_openatrel(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open("target", O_RDONLY);
		if (fd < 0)
			return perror("open target (relative)"), 1;
		close(fd);
	}
	return 0;
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

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s openat|openatrel|forkexec|connect|getppid ITERATIONS [DELAY_MS]\n",
			argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	if (argc > 3)
		usleep(atoi(argv[3]) * 1000);
	int (*loop)(long) = !strcmp(argv[1], "openat")   ? loop_openat :
			    !strcmp(argv[1], "openatrel") ? loop_openatrel :
			    !strcmp(argv[1], "forkexec") ? loop_forkexec :
			    !strcmp(argv[1], "connect")  ? loop_connect :
			    !strcmp(argv[1], "getppid")  ? loop_getppid : NULL;
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
