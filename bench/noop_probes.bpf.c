// SPDX-License-Identifier: Apache-2.0
/*
 * noop_probes.bpf.c: the do-nothing probe set of bench/overhead.py (bcc C).
 *
 * Attaches to exactly the tracepoints of the collector (bpf/collector.bpf.c, collector/loader.py
 * TRACEPOINTS; tests/collector/test_main.py checks the two sets are equal): each handler
 * does one lookup of the current tgid in a hash map that stays empty, then returns. What this costs
 * an untracked process is the floor any tracepoint-based monitor pays on this kernel: enabling
 * a syscalls:* tracepoint puts every syscall of every process on the tracing slow path
 * (docs/performance.md, "The floor").
 */

BPF_HASH(tracked, u32, u32, 1024);   // tgid -> unused; never filled

static __always_inline int lookup_only(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 *hit = tracked.lookup(&tgid);
	return hit ? 1 : 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_execveat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_connect) { return lookup_only(); }
TRACEPOINT_PROBE(sched, sched_process_exec) { return lookup_only(); }
TRACEPOINT_PROBE(sched, sched_process_exit) { return lookup_only(); }
TRACEPOINT_PROBE(task, task_newtask) { return lookup_only(); }
/* the detection signals (bpf/files.bpf.c, net.bpf.c, privilege.bpf.c) */
TRACEPOINT_PROBE(syscalls, sys_exit_chmod) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_unlink) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_unlinkat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_rmdir) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_rename) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_renameat) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_truncate) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_ftruncate) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmmsg) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_bind) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_listen) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_socket) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_ptrace) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_process_vm_readv) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_process_vm_writev) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setuid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setreuid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresuid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setregid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresgid) { return lookup_only(); }
TRACEPOINT_PROBE(syscalls, sys_exit_capset) { return lookup_only(); }
