// SPDX-License-Identifier: Apache-2.0
/*
 * privilege.bpf.c - access to other processes (ptrace, process_vm_readv/writev) and privilege
 * changes (set*id, capset) of tracked processes. Part of collector.bpf.c (#included at its end).
 * sys_exit only; arguments from the saved user registers.
 *
 * Hooks:
 *   ptrace(request, pid, addr, data)            every request, with its target pid
 *   process_vm_readv/writev(pid, ...)           the target pid
 *   setuid(u) setreuid(r, e) setresuid(r, e, s), and the gid ones: the ids asked for (-1:
 *                                                unchanged) and euid/egid after the call
 *   capset(header, data)                         the masks asked for (64-bit: data[0] | data[1] << 32
 *                                                for the v2/v3 headers, data[0] for v1) and the
 *                                                header's target pid (0: itself)
 * glibc runs set*id in every thread of a process (the setxid broadcast), so a multi-threaded
 * process reports one setid per thread.
 */

#define CAP_V1 0x19980330      /* _LINUX_CAPABILITY_VERSION_1: one 32-bit data element */

static __always_inline int ptrace_exit(long ret)
{
	struct event *e = tracked_record(EV_PTRACE, SC_PTRACE, ret);
	void *regs;

	if (!e)
		return 0;
	regs = user_regs();
	e->val[0] = SC_ARG(regs, 0);
	e->val[1] = (u32)SC_ARG(regs, 1);
	return output_header_record(e);
}

static __always_inline int vm_exit(u32 sc, long ret)
{
	struct event *e = tracked_record(EV_VM_READ, sc, ret);

	if (!e)
		return 0;
	e->val[0] = (u32)SC_ARG(user_regs(), 0);
	return output_header_record(e);
}

/* set*id: `count` ids asked for (s32 each), then euid | egid << 32 after the call. */
static __always_inline int setid_exit(u32 sc, long ret, int count)
{
	struct event *e = tracked_record(EV_SETID, sc, ret);
	void *regs;

	if (!e)
		return 0;
	regs = user_regs();
	e->val[0] = (u32)SC_ARG(regs, 0);
	if (count > 1)
		e->val[1] = (u32)SC_ARG(regs, 1);
	if (count > 2)
		e->val[2] = (u32)SC_ARG(regs, 2);
	e->val[3] = cur_euid_egid();
	return output_header_record(e);
}

static __always_inline int capset_exit(long ret)
{
	struct event *e = tracked_record(EV_CAPSET, SC_CAPSET, ret);
	void *regs;
	u32 hdr[2] = {};       /* struct __user_cap_header_struct { u32 version; int pid; } */
	u32 data[6] = {};      /* struct __user_cap_data_struct { effective, permitted, inheritable }[2] */

	if (!e)
		return 0;
	regs = user_regs();
	bpf_probe_read_user(hdr, sizeof(hdr), (void *)SC_ARG(regs, 0));
	if (hdr[0] == CAP_V1)
		bpf_probe_read_user(data, 3 * sizeof(u32), (void *)SC_ARG(regs, 1));
	else
		bpf_probe_read_user(data, sizeof(data), (void *)SC_ARG(regs, 1));
	e->val[0] = (u64)data[0] | (u64)data[3] << 32;
	e->val[1] = (u64)data[1] | (u64)data[4] << 32;
	e->val[2] = (u64)data[2] | (u64)data[5] << 32;
	e->val[3] = hdr[1];
	return output_header_record(e);
}
