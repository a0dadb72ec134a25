/* SPDX-License-Identifier: Apache-2.0 */
/*
 * compat_exec PROGRAM ARG: execve(PROGRAM, [PROGRAM, ARG], []) through the 32-bit syscall entry
 * (int $0x80) from a 64-bit process, which the syscalls:* tracepoints do not see on x86-64
 * (kernel/trace/trace_syscalls.c skips compat syscalls). The collector must still report the
 * exec (tests/collector/test_exec_facts_live.py). Pointers must fit 32 bits: MAP_32BIT.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	uint32_t *vec;
	long ret;

	if (low == MAP_FAILED || argc < 3 || strlen(argv[1]) > 1000 || strlen(argv[2]) > 1000)
		return 2;
	strcpy(low, argv[1]);
	strcpy(low + 1024, argv[2]);
	vec = (uint32_t *)(low + 2048);
	vec[0] = (uint32_t)(uintptr_t)low;
	vec[1] = (uint32_t)(uintptr_t)(low + 1024);
	vec[2] = 0;
	fflush(stdout);
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(11), "b"(low), "c"(vec), "d"(vec + 2) : "memory");
	return 3;       /* only reached when the exec failed */
}
