// SPDX-License-Identifier: Apache-2.0
/*
 * collector.bpf.c - CASA kernel-side capture (bcc C; tracepoints only).
 *
 * What: exec, open, connect, exit and fork events of the processes in the `tracked` map (agent
 * roots and their descendants), and the detection signals (chmod, unlink, rename, truncate,
 * memfd, ptrace, vm_read, send, bind, listen, socket, setid, capset), sent to user space through
 * the `events` ring buffer.
 *
 * Hooks:
 *   syscalls:sys_enter_execve, _execveat         path, argv, fd-backed exe, base directory of a
 *                                                relative path, euid/CapEff before (one program:
 *                                                exec_enter_family)
 *   syscalls:sys_exit_execve, _execveat          ret; caps, ino/dev, euid after; then the tail call
 *                                                exec_facts: fds 0-2, the parent's fd types, LD_*
 *   syscalls:sys_exit_openat, _openat2, _open    ret (fd / -errno); path, dirfd, flags, mode read
 *                                                back from the saved user registers (no enter probe);
 *                                                base directory of a relative path; ino/dev of a
 *                                                file opened for writing (one program: open_family)
 *   syscalls:sys_exit_connect                    ret; AF_INET / AF_INET6 address and port read
 *                                                back through the saved sockaddr pointer
 *   sched:sched_process_exec                     new roots: post-exec comm in `root_comms`; and
 *                                                tracked execs without a sys_enter record
 *   task:task_newtask                            new processes (not threads) inherit tracking
 *   sched:sched_process_exit                     whole-process exit (group_dead)
 *   the detection signals' sys_exit tracepoints  files.bpf.c, net.bpf.c, privilege.bpf.c; the calls
 *                                                with paths and the sends as families (path_family,
 *                                                fd_path_family, rename_family, send_family)
 *
 * A family program serves several tracepoints (the loader attaches it to each, FAMILIES) and tells
 * them apart by __syscall_nr: the path walk, the largest code here, is then compiled and verified
 * once per family instead of once per tracepoint, which more than halves the collector's start.
 *
 * Kernel struct offsets (OFF_*) come from the running kernel's BTF as -D cflags
 * (collector/btf_offsets.py); the kernel headers bcc compiles with may not match the kernel.
 *
 * Caveats:
 *   - untracked processes cost one hash lookup per hooked syscall (plus the kernel's tracing
 *     slow path, which any syscall tracepoint imposes).
 *   - open paths (and openat2's struct open_how) and connect addresses are read from user memory
 *     at sys_exit, so a thread that rewrites the buffer during the call can change what is
 *     reported.
 *   - while the ring buffer cannot take the smallest open record, a tracked open is counted as
 *     dropped before anything is read (the flood case: the drop costs a lookup, not a record).
 *   - a relative exec/open path is reported as given, plus the names of its base directory
 *     (cwd or dirfd) from a bounded dentry walk (walk_dir); docs/collector.md says when it fails.
 *   - an exec of a provisional root is built at sched_process_exec: its argv is the new image's
 *     args area, and its comm is the post-exec comm (the pre-exec comm is gone by then).
 */
#include <uapi/linux/ptrace.h>
#include "events.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef MAX_TRACKED
#define MAX_TRACKED 65536
#endif

#define AT_FDCWD_VAL (-100)
#define AT_EMPTY_PATH_VAL 0x1000
#define CLONE_THREAD_VAL 0x10000ULL
#define AF_INET_VAL 2
#define AF_INET6_VAL 10
#define ARGV_AREA (MAX_ARGS * MAX_ARG_LEN)
#define RINGBUF_BYTES ((u64)RINGBUF_PAGES * PAGE_SIZE)
/* header + a 1-byte path, 8-aligned, + the ring buffer's 8-byte record header */
#define MIN_OPEN_RECORD (((EVENT_HEADER_SIZE + 1 + 7) & ~7) + 8)

#if !defined(OFF_SC_ARG0) || !defined(OFF_SC_ARG1) || !defined(OFF_SC_ARG2) || !defined(OFF_SC_ARG3) || \
    !defined(OFF_SC_ARG4) || !defined(OFF_SC_ARG5)
#error "OFF_SC_ARG0..5 (syscall argument registers in struct pt_regs) must come as -D cflags: collector/loader.py knows x86_64 and aarch64 only"
#endif

/*
 * The record of every syscalls:sys_enter_* / sys_exit_* tracepoint (tracefs format files): the
 * common header (which a tracepoint program may not read), then __syscall_nr, then the arguments
 * (8 bytes each) or the return value. The family programs below (one program for several
 * tracepoints, attached by the loader) tell their tracepoints apart by __syscall_nr, compared
 * with the numbers the loader passes as -DCASA_NR_<NAME> (-1: no such call on this machine).
 * The enter and exit records differ only in what follows __syscall_nr.
 */
struct syscall_ctx {
	u16 common_type;
	u8 common_flags;
	u8 common_preempt_count;
	s32 common_pid;
	s32 nr;
	s32 pad;
	union {
		u64 args[6];   /* sys_enter_* */
		s64 ret;       /* sys_exit_* */
	};
};

#if !defined(CASA_NR_OPENAT) || !defined(CASA_NR_EXECVEAT) || !defined(CASA_NR_SENDTO)
#error "CASA_NR_* (the families' syscall numbers) must come as -D cflags: collector/loader.py SYSCALL_NRS"
#endif
#define IS_SC(ctx, num) ((num) >= 0 && (ctx)->nr == (num))
/* A three-call family's SC_<name>: the first of a, b that is this tracepoint's call, else c. */
#define SC_OF(ctx, a, b, c) \
	(IS_SC(ctx, CASA_NR_##a) ? SC_##a : IS_SC(ctx, CASA_NR_##b) ? SC_##b : SC_##c)

struct track {
	u32 root;          /* tgid of the root this process descends from */
	u32 depth;         /* forks below the root */
	u32 provisional;   /* 1 until user space confirms the root's profile match */
};

struct comm_key {
	char comm[COMM_LEN];   /* zero-padded */
};

/* Output: one record per event (struct event, cut to its used size). */
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
/* tgid -> struct track: the processes whose events are captured. Written by user space too. */
BPF_HASH(tracked, u32, struct track, MAX_TRACKED);
/* post-exec comm -> 1: comms that may start a root (agents.Profile.root_comms()). */
BPF_HASH(root_comms, struct comm_key, u8, 256);
/* [0] = the collector's own tgid, never tracked. */
BPF_ARRAY(self_tgid, u32, 1);
/* [0] = records lost because the ring buffer was full (per CPU). */
BPF_PERCPU_ARRAY(drops, u64, 1);
/* [0] = where records are built (too large for the 512-byte stack). */
BPF_PERCPU_ARRAY(scratch, struct event, 1);
/*
 * [0] = where a rename record is built: its second path and that path's base-directory names are
 * packed after the first path's (at most 2 * MAX_PATH_LEN + MAX_DIR_LEN bytes from `path`).
 */
struct two_path_record {
	struct event e;
	char more[2 * MAX_PATH_LEN + DIR_NAME_SLOT];
};
BPF_PERCPU_ARRAY(two_path_scratch, struct two_path_record, 1);
/* tid -> exec record between sys_enter and sys_exit (LRU: a thread killed mid-call leaks none). */
BPF_TABLE("lru_hash", u32, struct event, pending_exec, 256);

static __always_inline void *read_ptr(void *addr)
{
	void *p = 0;
	bpf_probe_read_kernel(&p, sizeof(p), addr);
	return p;
}

/*
 * Direct loads through BTF pointers (bpf_get_current_task_btf): the verifier checks each one
 * against the running kernel's BTF and turns it into a fault-safe load (a bad pointer reads 0),
 * so this costs two loads instead of two bpf_probe_read_kernel calls on every event.
 */
static __always_inline void *btf_ptr(void *base, u64 off)
{
	return *(void *volatile *)(base + off);
}

static __always_inline u32 current_ppid(void)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *parent = *(void *volatile *)(task + OFF_TASK_REAL_PARENT);
	return *(volatile u32 *)(parent + OFF_TASK_TGID);
}

static __always_inline struct track *lookup_tracked(u32 tgid)
{
	return tracked.lookup(&tgid);
}

static __always_inline void fill_header(struct event *e, u32 kind, struct track *t)
{
	u64 id = bpf_get_current_pid_tgid();
	__builtin_memset(e, 0, EVENT_HEADER_SIZE);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->tgid = id >> 32;
	e->tid = (u32)id;
	e->ppid = current_ppid();
	e->uid = (u32)bpf_get_current_uid_gid();
	e->root = t->root;
	e->depth = t->depth;
	e->dirfd = AT_FDCWD_VAL;
	e->seccomp = -1;
	if (t->provisional)
		e->status |= ST_PROVISIONAL;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline void count_drop(void)
{
	u32 zero = 0;
	u64 *d = drops.lookup(&zero);
	if (d)
		*d += 1;
}

static __always_inline struct event *scratch_event(void)
{
	u32 zero = 0;
	return scratch.lookup(&zero);
}

/* The scratch record with the header of a `kind` event of tracked process t (0: no slot). */
static __always_inline struct event *new_record(struct track *t, u32 kind)
{
	struct event *e = scratch_event();

	if (e)
		fill_header(e, kind, t);
	return e;
}

static __always_inline struct track *current_tracked(void)
{
	return lookup_tracked(bpf_get_current_pid_tgid() >> 32);
}

/* Capabilities and seccomp mode of the current task (called after the exec committed creds). */
static __always_inline void read_security(struct event *e)
{
	void *task = (void *)bpf_get_current_task();
	void *cred = read_ptr(task + OFF_TASK_CRED);
	u64 caps = 0;
	s32 mode = -1;
	if (!cred || bpf_probe_read_kernel(&caps, sizeof(caps), cred + OFF_CRED_CAP_EFF))
		return;
	if (bpf_probe_read_kernel(&mode, sizeof(mode), task + OFF_TASK_SECCOMP_MODE))
		return;
	e->cap_eff = caps;
	e->seccomp = mode;
	e->status |= ST_CAPS_VALID;
}

/* ---- exec ---------------------------------------------------------------------------- */

static __always_inline void read_argv(struct event *e, const char *const *argv)
{
	const char *p;
	char last;
	long n;
	int i;

	for (i = 0; i < MAX_ARGS; i++) {
		p = 0;
		if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
			return;
		n = bpf_probe_read_user_str(e->argv + i * MAX_ARG_LEN, MAX_ARG_LEN, p);
		if (n < 0)
			return;
		e->argc = i + 1;
		if (n == MAX_ARG_LEN) {
			/* the slot is full: truncated unless the string ended exactly there */
			last = 0;
			bpf_probe_read_user(&last, 1, p + MAX_ARG_LEN - 1);
			if (last)
				e->status |= ST_ARGV_TRUNCATED;
		}
	}
	p = 0;
	bpf_probe_read_user(&p, sizeof(p), &argv[MAX_ARGS]);
	if (p)
		e->status |= ST_ARGV_TRUNCATED;
}

/* Decimal digits at p[*i..]; advances *i. Returns -1 if none. */
static __always_inline long parse_decimal(const char *p, int *i)
{
	long v = 0;
	int start = *i;
	int k;

	for (k = 0; k < 10; k++) {
		int j = start + k;
		char c;
		if (j < 0 || j >= 40)
			break;
		c = p[j];
		if (c < '0' || c > '9')
			break;
		v = v * 10 + (c - '0');
	}
	if (k == 0)
		return -1;
	*i = start + k;
	return v;
}

/* fd number of "/dev/fd/N", "/proc/self/fd/N" or "/proc/<own tgid>/fd/N"; -1 for other paths. */
static __always_inline int fd_of_path(const char *p, u32 tgid)
{
	int i;
	long pid, fd;

	if (p[0] != '/')
		return -1;
	if (p[1] == 'd' && p[2] == 'e' && p[3] == 'v' && p[4] == '/' &&
	    p[5] == 'f' && p[6] == 'd' && p[7] == '/') {
		i = 8;
	} else if (p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c' && p[5] == '/') {
		if (p[6] == 's' && p[7] == 'e' && p[8] == 'l' && p[9] == 'f') {
			i = 10;
		} else {
			i = 6;
			pid = parse_decimal(p, &i);
			if (pid != tgid)
				return -1;
		}
		if (i < 0 || i > 30)
			return -1;
		if (p[i] != '/' || p[i + 1] != 'f' || p[i + 2] != 'd' || p[i + 3] != '/')
			return -1;
		i += 4;
	} else {
		return -1;
	}
	fd = parse_decimal(p, &i);
	if (fd < 0 || i < 0 || i >= 40 || p[i] != 0)
		return -1;
	return (int)fd;
}

/* ---- files, paths and identity --------------------------------------------------------- */

#define S_IFMT_VAL 0170000
#define S_IFDIR_VAL 0040000
/* O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND (same values on x86-64 and arm64) */
#define WRITE_INTENT_FLAGS (01 | 02 | 0100 | 01000 | 02000)

#if OFF_DENTRY_NAME - OFF_DENTRY_QSTR != 8 || OFF_DENTRY_NAME_LEN - OFF_DENTRY_QSTR > 4
#error "struct qstr is not {hash, len; name} in 16 bytes on this kernel: the walk reads it whole"
#endif
/* d_name within 16 bytes after d_parent, 8-aligned: the walk reads both with one helper call */
#if OFF_DENTRY_QSTR > OFF_DENTRY_PARENT && OFF_DENTRY_QSTR - OFF_DENTRY_PARENT <= 16 && \
    (OFF_DENTRY_QSTR - OFF_DENTRY_PARENT) % 8 == 0
#define DENTRY_SPAN_READ 1
#define QSTR_SLOT ((OFF_DENTRY_QSTR - OFF_DENTRY_PARENT) / 8)
#else
#define DENTRY_SPAN_READ 0
#endif

/*
 * task->files->fdt->fd[fd], or NULL. files, fdt and max_fds are direct BTF loads (fault-safe,
 * checked against the kernel's BTF like current_ppid); the array slot needs a probe read
 * because its index is not a constant.
 */
static __always_inline void *fd_file(int fd)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *files, *fdt, *fdarr;
	u32 max_fds;

	if (fd < 0)
		return 0;
	files = *(void *volatile *)(task + OFF_TASK_FILES);
	if (!files)
		return 0;
	fdt = *(void *volatile *)(files + OFF_FILES_FDT);
	if (!fdt)
		return 0;
	max_fds = *(volatile u32 *)(fdt + OFF_FDT_MAX_FDS);
	if ((u32)fd >= max_fds)
		return 0;
	fdarr = *(void *volatile *)(fdt + OFF_FDT_FD);
	if (!fdarr)
		return 0;
	return read_ptr(fdarr + (u64)fd * sizeof(void *));
}

/* ino and dev of a file (f_inode->i_ino, f_inode->i_sb->s_dev); ST_IDENTITY when both were read. */
static __always_inline void file_identity(struct event *e, void *file)
{
	void *inode, *sb;
	u64 ino = 0;
	u32 dev = 0;

	if (!file)
		return;
	inode = read_ptr(file + OFF_FILE_INODE);
	if (!inode || bpf_probe_read_kernel(&ino, sizeof(ino), inode + OFF_INODE_INO))
		return;
	sb = read_ptr(inode + OFF_INODE_SB);
	if (!sb || bpf_probe_read_kernel(&dev, sizeof(dev), sb + OFF_SB_DEV))
		return;
	e->ino = ino;
	e->dev = dev;
	e->status |= ST_IDENTITY;
}

/*
 * Identity of the image the current task runs now (mm->exe_file): called after a successful
 * exec. Every pointer on the way is typed in the kernel's BTF, so these are direct loads.
 */
static __always_inline void exe_identity(struct event *e)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *mm, *file, *inode, *sb;

	mm = btf_ptr(task, OFF_TASK_MM);
	file = mm ? btf_ptr(mm, OFF_MM_EXE_FILE) : 0;
	inode = file ? btf_ptr(file, OFF_FILE_INODE) : 0;
	sb = inode ? btf_ptr(inode, OFF_INODE_SB) : 0;
	if (!sb)
		return;
	e->ino = *(volatile u64 *)(inode + OFF_INODE_INO);
	e->dev = *(volatile u32 *)(sb + OFF_SB_DEV);
	e->status |= ST_IDENTITY;
}

/*
 * The walk from a directory up to the process's root (fs->root), writing each name passed,
 * leaf first and NUL-terminated, at area[0..]; *cursor (e->dir_len, or e->dir2_len for a
 * rename's new path) counts the bytes written. Like the
 * kernel's prepend_path (fs/d_path.c): at the root dentry of a mount it continues from the mount
 * point in the parent mount (struct mount, reached from the vfsmount by container_of); it stops
 * at the process's root, so a chroot or a container sees its own paths. One step is one name or
 * one mount crossing; at most MAX_DIR_STEPS.
 *
 * Probe reads, not direct BTF loads: after a mount crossing the pointers come from struct mount,
 * which is reached by pointer arithmetic the verifier cannot type. The write cursor lives in the
 * record (*cursor, re-read every step), not in a register: a register cursor has a different
 * range after every sequence of names and crossings, and the verifier then explores each
 * sequence separately (over a million instructions at 32 steps); read back from map memory it is
 * the same bounded unknown every time, and the states of one step merge.
 */
static __always_inline u32 walk_dir(u16 *cursor, char *area, void *fs, void *dentry, void *vfsmnt)
{
	/* fs is a BTF pointer (resolve_base): the root is two direct loads */
	void *root_dentry = *(void *volatile *)(fs + OFF_FS_ROOT + OFF_PATH_DENTRY);
	void *root_mnt = *(void *volatile *)(fs + OFF_FS_ROOT + OFF_PATH_MNT);
	void *mnt, *mnt_root, *parent, *up;
	u64 qstr[2];             /* struct qstr: {hash, len} then name */
#if DENTRY_SPAN_READ
	u64 span[QSTR_SLOT + 2]; /* d_parent .. d_name.name */
#endif
	u32 pos, nlen;
	long n;
	int i;

	if (!dentry || !vfsmnt || !root_dentry || !root_mnt)
		return DIR_UNREADABLE;
	mnt = vfsmnt - OFF_MOUNT_MNT;
	mnt_root = read_ptr(vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
	for (i = 0; i <= MAX_DIR_STEPS; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			return DIR_OK;
		if (i == MAX_DIR_STEPS || !mnt_root)
			break;
		if (dentry == mnt_root) {
			up = read_ptr(mnt + OFF_MOUNT_PARENT);
			if (!up || up == mnt)
				return DIR_OUTSIDE_ROOT;     /* the top of the mount tree, and no root met */
			dentry = read_ptr(mnt + OFF_MOUNT_MOUNTPOINT);
			mnt = up;
			vfsmnt = up + OFF_MOUNT_MNT;
			mnt_root = read_ptr(vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
			if (!dentry)
				return DIR_UNREADABLE;
			continue;
		}
#if DENTRY_SPAN_READ
		/* d_parent and d_name are adjacent (24 and 32 on 6.x): one read for both */
		if (bpf_probe_read_kernel(span, sizeof(span), dentry + OFF_DENTRY_PARENT))
			return DIR_UNREADABLE;
		parent = (void *)span[0];
		qstr[0] = span[QSTR_SLOT];
		qstr[1] = span[QSTR_SLOT + 1];
#else
		parent = read_ptr(dentry + OFF_DENTRY_PARENT);
		if (bpf_probe_read_kernel(qstr, sizeof(qstr), dentry + OFF_DENTRY_QSTR))
			return DIR_UNREADABLE;
#endif
		if (!parent)
			return DIR_UNREADABLE;
		if (parent == dentry)
			return DIR_OUTSIDE_ROOT;             /* a detached tree (memfd, pseudo files) */
		nlen = (u32)(qstr[0] >> (8 * (OFF_DENTRY_NAME_LEN - OFF_DENTRY_QSTR)));
		pos = *(volatile u16 *)cursor;
		if (pos + nlen + 1 >= MAX_DIR_LEN)
			return DIR_TOO_LONG;
		n = bpf_probe_read_kernel_str(area + (pos & (MAX_DIR_LEN - 1)), DIR_NAME_SLOT, (void *)qstr[1]);
		if (n <= 1)
			return DIR_UNREADABLE;
		if (pos + n >= MAX_DIR_LEN)
			return DIR_TOO_LONG;                 /* renamed meanwhile to a longer name */
		*(volatile u16 *)cursor = pos + n;
		dentry = parent;
	}
	return mnt_root ? DIR_TOO_DEEP : DIR_UNREADABLE;
}

/*
 * Where a relative path starts: the cwd (fs->pwd) for AT_FDCWD, else the file behind dirfd,
 * which must be a directory unless `self` (execveat(fd, "", AT_EMPTY_PATH): the fd's own file,
 * whose name is then the first one written). A removed directory (unhashed dentry that is not a
 * root: the kernel's d_unlinked, what makes getcwd fail) is not walked. *cursor (the record's
 * dir_len or dir2_len) stays 0 unless the walk reached the root; *error is its enum dir_error.
 */
static __always_inline void resolve_base_to(u16 *cursor, u16 *error, char *area, int dirfd, int self)
{
	/* task->fs and fs->pwd are direct BTF loads (fault-safe, like current_ppid) */
	void *task = (void *)bpf_get_current_task_btf();
	void *fs = *(void *volatile *)(task + OFF_TASK_FS);
	void *dentry, *vfsmnt, *file, *inode;
	u16 mode = 0;
	u32 err;

	*error = DIR_UNREADABLE;
	*cursor = 0;
	if (!fs)
		return;
	if (dirfd == AT_FDCWD_VAL && !self) {
		dentry = *(void *volatile *)(fs + OFF_FS_PWD + OFF_PATH_DENTRY);
		vfsmnt = *(void *volatile *)(fs + OFF_FS_PWD + OFF_PATH_MNT);
	} else {
		file = fd_file(dirfd);
		if (!file) {
			*error = DIR_BAD_FD;
			return;
		}
		inode = read_ptr(file + OFF_FILE_INODE);
		if (!inode || bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_MODE))
			return;
		if (!self && (mode & S_IFMT_VAL) != S_IFDIR_VAL) {
			*error = DIR_NOT_DIR;
			return;
		}
		dentry = read_ptr(file + OFF_FILE_DENTRY);
		vfsmnt = read_ptr(file + OFF_FILE_MNT);
	}
	if (!dentry)
		return;
	if (!read_ptr(dentry + OFF_DENTRY_HASH_PPREV) && read_ptr(dentry + OFF_DENTRY_PARENT) != dentry) {
		*error = DIR_DELETED;
		return;
	}
	err = walk_dir(cursor, area, fs, dentry, vfsmnt);
	*error = err;
	if (err != DIR_OK)
		*cursor = 0;
}

/* The base of the record's (first) path: its names go to e->dir_len / e->dir_error. */
static __always_inline void resolve_base(struct event *e, char *area, int dirfd, int self)
{
	resolve_base_to(&e->dir_len, &e->dir_error, area, dirfd, self);
}

/* exe = dentry name of the file behind fd (task->files->fdt->fd[fd]->f_path.dentry->d_name). */
static __always_inline void resolve_fd(struct event *e, int fd)
{
	void *file, *dentry, *name, *inode;
	u32 nlink = 1;

	file = fd_file(fd);
	if (!file)
		return;
	dentry = read_ptr(file + OFF_FILE_DENTRY);
	if (!dentry)
		return;
	name = read_ptr(dentry + OFF_DENTRY_NAME);
	if (!name || bpf_probe_read_kernel_str(e->exe, MAX_EXE_LEN, name) <= 0)
		return;
	e->status |= ST_EXE_RESOLVED;
	inode = read_ptr(dentry + OFF_DENTRY_INODE);
	if (inode && !bpf_probe_read_kernel(&nlink, sizeof(nlink), inode + OFF_INODE_NLINK) && nlink == 0)
		e->status |= ST_EXE_DELETED;
}

/*
 * [0] = the first ENV_BLOCK bytes of a new image's environment strings, copied with one probe
 * read so the LD_* scan (env.bpf.c) can match an entry's name by looking at memory, not with a
 * helper call per entry, and where the values it keeps start.
 */
struct env_block {
	char b[ENV_BLOCK + 16];      /* the slack: a 16-byte look at any offset below ENV_BLOCK */
	u64 value[LD_SLOTS];         /* user address of each kept LD_* value (0: none) */
};
BPF_PERCPU_ARRAY(env_scratch, struct env_block, 1);

static __always_inline struct env_block *env_block(void)
{
	u32 zero = 0;

	return env_scratch.lookup(&zero);
}

#include "fds.bpf.c"     /* what fds 0-2 are (file_type, read_stdio), socket addresses */
#include "env.bpf.c"     /* LD_* in the new image's environment, credentials around an exec */

/* An exec record is sent up to its dir area plus the names written there. */
#define EXEC_FIXED_SIZE (__builtin_offsetof(struct event, dir))

static __always_inline u64 exec_record_size(struct event *e)
{
	return EXEC_FIXED_SIZE + (e->dir_len & (MAX_DIR_LEN - 1));
}

/* Send an exec record (flag 0: it wakes the reader) and forget thread tid's pending one. */
static __always_inline int send_exec(struct event *e, u32 *tid)
{
	if (events.ringbuf_output(e, exec_record_size(e), 0))
		count_drop();
	pending_exec.delete(tid);
	return 0;
}

/*
 * The facts of a successful exec that are costly to verify -- fds 0-2 (read_stdio) and the LD_*
 * scan of the environment (scan_env) -- live in one program, exec_facts, that the exec probes
 * tail-call (exec_tail[0], filled by the loader): verified once, not once per exec probe (four
 * inlined copies took the verifier ~3 s at start-up, a third of the collector's start). It
 * finishes the current thread's pending_exec record (an exec built at sched_process_exec is put
 * there too), sends it and deletes it. When the tail call cannot run (the array slot is empty:
 * never after a normal start) the caller sends the record without those facts.
 */
BPF_PROG_ARRAY(exec_tail, 1);

int exec_facts(void *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct event *e = pending_exec.lookup(&tid);

	if (!e)
		return 0;
	read_stdio(e);
	scan_env(e);
	return send_exec(e, &tid);
}

static __always_inline int exec_enter(u32 sc, int dirfd, const char *filename,
				      const char *const *argv, u64 flags)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;
	struct track *t = lookup_tracked(tgid);
	struct event *e;
	long n;
	char more = 0;
	int fd = -1;

	if (!t)
		return 0;
	e = new_record(t, EV_EXEC);
	if (!e)
		return 0;
	e->syscall = sc;
	e->dirfd = dirfd;
	e->flags = flags;
	e->exe[0] = 0;
	n = bpf_probe_read_user_str(e->path, MAX_PATH_LEN, filename);
	e->path_len = n > 0 ? n : 0;
	if (n <= 0)
		e->path[0] = 0;
	if (n == MAX_PATH_LEN && !bpf_probe_read_user(&more, 1, filename + MAX_PATH_LEN - 1) && more)
		e->status |= ST_PATH_TRUNCATED;
	read_argv(e, argv);
	prev_creds(e);
	if (sc == SC_EXECVEAT && (flags & AT_EMPTY_PATH_VAL) && n == 1) {
		fd = dirfd;                            /* fexecve: the fd's own file runs */
		resolve_base(e, e->dir, dirfd, 1);
	} else if (n > 1) {                            /* "" fails with ENOENT: nothing to resolve */
		fd = fd_of_path(e->path, tgid);
		if (e->path[0] != '/')
			resolve_base(e, e->dir, dirfd, 0);   /* before the exec: an O_CLOEXEC dirfd goes */
	}
	resolve_fd(e, fd);
	pending_exec.update(&tid, e);
	return 0;
}

static __always_inline int exec_exit(void *ctx, long ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct event *e = pending_exec.lookup(&tid);

	if (!e)
		return 0;
	e->ret = ret;
	e->val[0] = (u32)cur_euid_egid();
	if (ret == 0) {
		bpf_get_current_comm(e->new_comm, sizeof(e->new_comm));
		read_security(e);
		exe_identity(e);
		exec_tail.call(ctx, 0);            /* exec_facts sends it; returns only if it cannot run */
	}
	return send_exec(e, &tid);
}

/*
 * sys_enter_execve(filename, argv, envp), sys_enter_execveat(fd, filename, argv, envp, flags).
 * The arguments are copied out of the record with a probe read: a direct load of execveat's 5th
 * would make the program's context larger than execve's record, and the kernel then refuses to
 * attach it there (PERF_EVENT_IOC_SET_BPF: EACCES).
 */
int exec_enter_family(struct syscall_ctx *ctx)
{
	u64 a[5] = {};

	if (!lookup_tracked(bpf_get_current_pid_tgid() >> 32))
		return 0;                              /* untracked: the lookup, nothing else */
	if (!IS_SC(ctx, CASA_NR_EXECVEAT)) {
		/* execve: shift its (filename, argv) to execveat's places, AT_FDCWD, no flags */
		bpf_probe_read_kernel(&a[1], 2 * sizeof(u64), ctx->args);
		a[0] = (u64)AT_FDCWD_VAL;
	} else {
		bpf_probe_read_kernel(a, 5 * sizeof(u64), ctx->args);
	}
	return exec_enter(IS_SC(ctx, CASA_NR_EXECVEAT) ? SC_EXECVEAT : SC_EXECVE, (int)a[0],
			  (const char *)a[1], (const char *const *)a[2], a[4]);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
	return exec_exit(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
	return exec_exit(args, args->ret);
}

/*
 * A non-leader thread that execs takes over the leader's pid (de_thread): move its record.
 * Returns whether the exec has a record from sys_enter at all.
 */
static __always_inline int move_pending_exec(u32 old_tid, u32 new_tid)
{
	struct event *e = pending_exec.lookup(&old_tid);

	if (!e)
		return 0;
	if (old_tid != new_tid) {
		pending_exec.update(&new_tid, e);
		pending_exec.delete(&old_tid);
	}
	return 1;
}

/*
 * An exec record built at sched_process_exec, when the exec is done: path from the tracepoint,
 * argv from the new image's args area (flat), base directory from the cwd (an exec does not
 * change it), then exec_facts (tail call) adds fds 0-2 and the LD_* variables and sends it. No
 * sys_enter facts (prev_euid ...) exist here.
 */
static __always_inline int exec_at_sched(void *ctx, struct event *e, const char *filename)
{
	void *task, *mm;
	u64 start = 0, end = 0, len;
	char more = 0;
	u32 tid;

	e->syscall = SC_NONE;
	e->exe[0] = 0;
	e->val[0] = (u32)cur_euid_egid();
	bpf_get_current_comm(e->new_comm, sizeof(e->new_comm));
	len = bpf_probe_read_kernel_str(e->path, MAX_PATH_LEN, filename);
	e->path_len = (long)len > 0 ? len : 0;
	if (len == MAX_PATH_LEN && !bpf_probe_read_kernel(&more, 1, filename + MAX_PATH_LEN - 1) && more)
		e->status |= ST_PATH_TRUNCATED;
	if ((long)len > 1 && e->path[0] != '/')
		resolve_base(e, e->dir, AT_FDCWD_VAL, 0);    /* exec does not change the cwd */
	task = (void *)bpf_get_current_task();
	mm = read_ptr(task + OFF_TASK_MM);
	if (mm) {
		bpf_probe_read_kernel(&start, sizeof(start), mm + OFF_MM_ARG_START);
		bpf_probe_read_kernel(&end, sizeof(end), mm + OFF_MM_ARG_END);
	}
	len = end > start ? end - start : 0;
	if (len > ARGV_AREA) {
		len = ARGV_AREA;
		e->status |= ST_ARGV_TRUNCATED;
	}
	if (len > 0 && bpf_probe_read_user(e->argv, len, (void *)start) == 0)
		e->argc = len;
	e->status |= ST_ARGV_FLAT;
	read_security(e);
	exe_identity(e);
	/* exec_facts works on the thread's pending record: put this one there (rare: a new root, or
	 * an exec the syscall tracepoints missed; after de_thread the thread id is the leader's) */
	tid = (u32)bpf_get_current_pid_tgid();
	pending_exec.update(&tid, e);
	exec_tail.call(ctx, 0);                    /* exec_facts sends it; returns only if it cannot run */
	return send_exec(e, &tid);                  /* the scratch copy; the pending one goes */
}

/* A possible new root (post-exec comm in root_comms, not the collector): tracked provisionally. */
static __always_inline int provisional_root(u32 tgid, struct track *nt)
{
	struct comm_key key = {};
	u32 zero = 0;
	u32 *self;

	bpf_get_current_comm(key.comm, sizeof(key.comm));
	if (!root_comms.lookup(&key))
		return 0;
	self = self_tgid.lookup(&zero);
	if (self && *self == tgid)
		return 0;
	nt->root = tgid;
	nt->provisional = 1;
	tracked.update(&tgid, nt);
	return 1;
}

/*
 * Every exec of a tracked process has a record from sys_enter, which moves with a de_thread
 * (move_pending_exec) and is sent at sys_exit. An exec is built here instead (exec_at_sched) for
 * a new provisional root, which user space then confirms, and for a tracked process whose exec
 * has no sys_enter record: it came in through a path the syscall tracepoints do not see (a 32-bit
 * syscall, `int $0x80`, skips them on x86-64), or its record was evicted. So no exec of a tracked
 * process is unseen.
 */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct track *t = lookup_tracked(tgid);
	struct track nt = {};
	struct event *e;
	/* data_loc: low 16 bits are the offset of the string in the record */
	const char *filename = (const char *)args + (args->data_loc_filename & 0xFFFF);

	if (t) {
		if (move_pending_exec((u32)args->old_pid, (u32)args->pid))
			return 0;
	} else if (provisional_root(tgid, &nt)) {
		t = &nt;
	} else {
		return 0;
	}
	e = new_record(t, EV_EXEC);
	if (!e)
		return 0;
	return exec_at_sched(args, e, filename);
}

/* ---- open ----------------------------------------------------------------------------- */

/*
 * One probe per open, at sys_exit: the arguments are read back from the task's saved user
 * registers (bpf_task_pt_regs), which the syscall leaves unchanged (offsets from BTF,
 * collector/loader.py). Compared with an enter/exit pair joined through a per-thread hash this
 * saves, per open of every process, one tracepoint run and, per tracked open, a hash update,
 * lookup and delete.
 */
static __always_inline u64 syscall_arg(void *regs, u32 off)
{
	return *(volatile u64 *)(regs + off);
}

/* The saved user registers of the current task: syscall arguments at sys_exit (see above). */
static __always_inline void *user_regs(void)
{
	return (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

#define SC_ARG(regs, i) syscall_arg(regs, OFF_SC_ARG##i)

/*
 * The ring buffer cannot take even the smallest open record: the caller drops (and counts) the
 * event without building it. In a flood most tracked opens end here, so this keeps a dropped
 * open at the price of a lookup. bcc has no map method for bpf_ringbuf_query and does not
 * rewrite &events in a helper call; it names maps by fake fds in declaration order, so `events`,
 * declared first, is fd -1 (the verifier rejects the load if that is ever not a ring buffer).
 */
#define EVENTS_MAP ((void *)bpf_pseudo_fd(1, -1))

static __always_inline int ringbuf_full(void)
{
	u64 used = bpf_ringbuf_query(EVENTS_MAP, BPF_RB_AVAIL_DATA);
	return used + MIN_OPEN_RECORD > RINGBUF_BYTES;
}

/*
 * Waking the reader costs the traced process a self-IPI and a context switch (~20 us per record;
 * with a wakeup per record the tracked fork+exec target is out of reach: docs/performance.md,
 * section 7). So only exec records wake a waiting reader (flag 0: adaptive); open, connect, fork
 * and exit records wait for the reader's next pass -- it polls at least every 5 ms
 * (collector POLL_TIMEOUT_MS) -- except the record that makes the waiting data cross
 * WAKEUP_BYTES, which wakes it at once, so a burst does not sit in the buffer until it
 * overflows. One wakeup per crossing, not per record above the mark: a woken reader drains
 * everything, and epoll keeps reporting the buffer while data keeps coming. (Two CPUs crossing
 * at the same instant can both miss the mark; the 5 ms poll bounds that case.)
 */
#define WAKEUP_BYTES (RINGBUF_BYTES / 8)

static __always_inline u64 lazy_wakeup(u64 size)
{
	u64 used = bpf_ringbuf_query(EVENTS_MAP, BPF_RB_AVAIL_DATA);
	u64 rec = ((size + 7) & ~7ULL) + 8;     /* 8-aligned, plus the ring buffer's record header */

	return used < WAKEUP_BYTES && used + rec >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/*
 * Send `size` bytes of a record without waking the reader (lazy_wakeup). The included files call
 * this rather than events.ringbuf_output: bcc rewrites map method calls only in the main file.
 */
static __always_inline int output_record(struct event *e, u64 size)
{
	if (events.ringbuf_output(e, size, lazy_wakeup(size)))
		count_drop();
	return 0;
}

/* A record with nothing after the header. */
static __always_inline int output_header_record(struct event *e)
{
	return output_record(e, EVENT_HEADER_SIZE);
}

/*
 * A path argument (an open's, chmod's, unlink's ...): the caller's string into e->path (at most
 * MAX_PATH_LEN - 2 bytes: the length mask below keeps the verifier's bound, MAX_PATH_LEN is 2^k),
 * ST_PATH_TRUNCATED when it went on, and for a relative path its base directory's names right
 * after the path's NUL (resolve_base against dirfd).
 */
static __always_inline void user_path(struct event *e, const char *upath, int dirfd)
{
	long n = bpf_probe_read_user_str(e->path, MAX_PATH_LEN - 1, upath);
	u64 len = n > 0 ? ((u64)n & (MAX_PATH_LEN - 1)) : 0;
	char more = 0;

	e->path_len = len;
	if (n == MAX_PATH_LEN - 1 && !bpf_probe_read_user(&more, 1, upath + MAX_PATH_LEN - 2) && more)
		e->status |= ST_PATH_TRUNCATED;
	if (len > 1 && e->path[0] != '/')
		resolve_base(e, e->path + len, dirfd, 0);
}

/* A record of the open layout: the header, the path, its base-directory names. */
static __always_inline int output_path_record(struct event *e)
{
	u64 len = (e->path_len & (MAX_PATH_LEN - 1)) + (e->dir_len & (MAX_DIR_LEN - 1));

	return output_record(e, EVENT_HEADER_SIZE + len);
}

/*
 * The start of an open and of every detection-signal probe: the tracked lookup first (an
 * untracked process pays that and nothing else), then a drop without building anything while
 * the ring buffer is full (ringbuf_full), then the record (the scratch map's, or the two-path one for rename) with its header,
 * syscall and return value. A probe that filters on cheap facts first (send: the socket type)
 * looks up and filters, then calls start_record.
 */
static __always_inline struct event *start_record(struct track *t, int two_paths, u32 kind, u32 sc,
						  long ret)
{
	struct event *e;
	u32 zero = 0;

	if (ringbuf_full()) {
		count_drop();
		return 0;
	}
	if (two_paths) {
		struct two_path_record *r = two_path_scratch.lookup(&zero);
		e = r ? &r->e : 0;
	} else {
		e = scratch_event();
	}
	if (!e)
		return 0;
	fill_header(e, kind, t);
	e->syscall = sc;
	e->ret = ret;
	return e;
}

static __always_inline int open_exit(u32 sc, long ret)
{
	struct track *t = current_tracked();
	struct event *e;
	void *regs;
	const char *filename;
	u64 how[2] = {};   /* struct open_how { u64 flags; u64 mode; u64 resolve; } */

	if (!t)
		return 0;
	e = start_record(t, 0, EV_OPEN, sc, ret);
	if (!e)
		return 0;
	regs = user_regs();
	if (sc == SC_OPEN) {
		filename = (const char *)SC_ARG(regs, 0);
		e->flags = (u32)SC_ARG(regs, 1);
		e->mode = (u32)SC_ARG(regs, 2);
	} else {
		e->dirfd = (s32)SC_ARG(regs, 0);
		filename = (const char *)SC_ARG(regs, 1);
		if (sc == SC_OPENAT2) {
			bpf_probe_read_user(how, sizeof(how), (void *)SC_ARG(regs, 2));
			e->flags = how[0];
			e->mode = (u32)how[1];
		} else {
			e->flags = (u32)SC_ARG(regs, 2);
			e->mode = (u32)SC_ARG(regs, 3);
		}
	}
	user_path(e, filename, sc == SC_OPEN ? AT_FDCWD_VAL : e->dirfd);
	if (ret >= 0 && (e->flags & WRITE_INTENT_FLAGS))
		file_identity(e, fd_file(ret));
	return output_path_record(e);
}

/* sys_exit_openat, _openat2, _open (x86-64 only) */
int open_family(struct syscall_ctx *ctx)
{
	return open_exit(SC_OF(ctx, OPENAT2, OPEN, OPENAT), ctx->ret);
}

/* ---- connect ------------------------------------------------------------------------- */

/*
 * At sys_exit only, like opens: the destination is read back through the sockaddr pointer in
 * the saved user registers (connect(fd, uservaddr, addrlen)). Families other than AF_INET and
 * AF_INET6 are not reported.
 */
static __always_inline int inet_family(u16 family)
{
	return family == AF_INET_VAL || family == AF_INET6_VAL;
}

/* The address and port of a user sockaddr whose family (AF_INET or AF_INET6) is known. */
static __always_inline void user_inet_addr(struct event *e, const u8 *sa, u16 family)
{
	e->family = family;
	if (family == AF_INET_VAL)
		bpf_probe_read_user(e->addr, 4, sa + 4);        /* sockaddr_in.sin_addr */
	else
		bpf_probe_read_user(e->addr, 16, sa + 8);       /* sockaddr_in6.sin6_addr */
	/* sin_port / sin6_port, network order; the header was zeroed, so a failed read leaves 0 */
	bpf_probe_read_user(&e->port, sizeof(e->port), sa + 2);
	e->port = (e->port >> 8) | (e->port << 8);
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
	struct track *t = current_tracked();
	struct event *e;
	u8 *sa;
	u16 family = 0;

	if (!t)
		return 0;
	sa = (u8 *)SC_ARG(user_regs(), 1);
	if (bpf_probe_read_user(&family, sizeof(family), sa))
		return 0;
	if (!inet_family(family))
		return 0;
	e = new_record(t, EV_CONNECT);
	if (!e)
		return 0;
	e->syscall = SC_CONNECT;
	user_inet_addr(e, sa, family);
	e->ret = args->ret;
	return output_header_record(e);
}

/* ---- lineage ------------------------------------------------------------------------- */

/* Runs in the parent before the child can run, so the child's first syscall is already tracked. */
TRACEPOINT_PROBE(task, task_newtask)
{
	u32 tgid, child;
	struct track *t;
	struct track nt = {};
	struct event *e;

	if (args->clone_flags & CLONE_THREAD_VAL)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	t = lookup_tracked(tgid);
	if (!t)
		return 0;
	child = (u32)args->pid;
	nt.root = t->root;
	nt.depth = t->depth + 1;
	nt.provisional = t->provisional;
	tracked.update(&child, &nt);
	e = new_record(t, EV_FORK);
	if (!e)
		return 0;
	e->child_tgid = child;
	return output_header_record(e);
}

/* Fires per thread; group_dead marks the last thread of the process (whole-process exit). */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u32 tgid;
	struct track *t;
	struct event *e;
	void *task;

	if (!args->group_dead)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	t = lookup_tracked(tgid);
	if (!t)
		return 0;
	e = new_record(t, EV_EXIT);
	if (e) {
		task = (void *)bpf_get_current_task();
		bpf_probe_read_kernel(&e->exit_code, sizeof(e->exit_code), task + OFF_TASK_EXIT_CODE);
		output_header_record(e);
	}
	tracked.delete(&tgid);
	return 0;
}

/* ---- the detection signals: files, network, privilege (one file each, #included) --------- */

static __always_inline struct event *tracked_record_in(int two_paths, u32 kind, u32 sc, long ret)
{
	struct track *t = current_tracked();

	return t ? start_record(t, two_paths, kind, sc, ret) : 0;
}

static __always_inline struct event *tracked_record(u32 kind, u32 sc, long ret)
{
	return tracked_record_in(0, kind, sc, ret);
}

#include "files.bpf.c"       /* chmod, unlink, rename, truncate, memfd_create */
#include "net.bpf.c"         /* send, bind, listen, socket */
#include "privilege.bpf.c"   /* ptrace, process_vm_readv/writev, set*id, capset */

/*
 * The probes of the included files. bcc generates a tracepoint's `args` struct only for the
 * TRACEPOINT_PROBEs it finds in this (the main) file, so they are all here, one line each. The
 * calls with a path (whose walk is the largest code) come as families, one program each for all
 * the tracepoints of a family (attached by the loader, collector/loader.py FAMILIES): compiling
 * and verifying a copy of the walk per tracepoint took the collector's start from ~3 s to ~8 s.
 */
int path_family(struct syscall_ctx *ctx)
{
	return path_call_exit(ctx->nr, ctx->ret);
}

int fd_path_family(struct syscall_ctx *ctx)
{
	return fd_call_exit(ctx->nr, ctx->ret);
}

int rename_family(struct syscall_ctx *ctx)
{
	return rename_exit(SC_OF(ctx, RENAMEAT2, RENAMEAT, RENAME), ctx->ret);
}

int send_family(struct syscall_ctx *ctx)
{
	return send_exit(SC_OF(ctx, SENDMSG, SENDMMSG, SENDTO), ctx->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create) { return memfd_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_bind) { return bind_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_listen) { return listen_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_socket) { return socket_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_ptrace) { return ptrace_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_process_vm_readv) { return vm_exit(SC_PROCESS_VM_READV, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_process_vm_writev) { return vm_exit(SC_PROCESS_VM_WRITEV, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_setuid) { return setid_exit(SC_SETUID, args->ret, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setreuid) { return setid_exit(SC_SETREUID, args->ret, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresuid) { return setid_exit(SC_SETRESUID, args->ret, 3); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgid) { return setid_exit(SC_SETGID, args->ret, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setregid) { return setid_exit(SC_SETREGID, args->ret, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresgid) { return setid_exit(SC_SETRESGID, args->ret, 3); }
TRACEPOINT_PROBE(syscalls, sys_exit_capset) { return capset_exit(args->ret); }
