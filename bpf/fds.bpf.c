// SPDX-License-Identifier: Apache-2.0
/*
 * fds.bpf.c - what a file descriptor is: file, directory, pipe, terminal, socket (and the
 * socket's addresses). Part of collector.bpf.c (#included there, after fd_file and read_ptr).
 *
 * Every step is a probe read through offsets from the running kernel's BTF:
 *   task->files->fdt->fd[i] -> file->f_inode->i_mode (S_IFMT), i_ino, i_rdev
 *   file->private_data -> struct socket {type, sk} -> sk->__sk_common {family, addresses, ports}
 * A pointer read from an fd slot is a plain number to the verifier, so nothing past the fd table
 * can be a direct BTF load.
 *
 * Terminals are char devices of the tty majors (Documentation/admin-guide/devices.txt): 4 (tty0-63
 * and ttyS*), 5 (/dev/tty, /dev/console, /dev/ptmx) and 136-143 (Unix98 pty slaves, /dev/pts/*).
 * Any other char device (/dev/null, /dev/urandom) is FD_CHAR.
 */

#define S_IFSOCK_VAL 0140000
#define S_IFREG_VAL 0100000
#define S_IFCHR_VAL 0020000
#define S_IFIFO_VAL 0010000
#define AF_UNIX_VAL 1

/* struct sock behind a socket file (NULL if the file is not a socket); *type = socket.type */
static __always_inline void *file_sock(void *file, u16 *type)
{
	void *inode, *sock;
	u16 mode = 0;

	if (!file)
		return 0;
	inode = read_ptr(file + OFF_FILE_INODE);
	if (!inode || bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_MODE))
		return 0;
	if ((mode & S_IFMT_VAL) != S_IFSOCK_VAL)
		return 0;
	sock = read_ptr(file + OFF_FILE_PRIVATE);
	if (!sock)
		return 0;
	if (type)
		bpf_probe_read_kernel(type, sizeof(*type), sock + OFF_SOCKET_TYPE);
	return read_ptr(sock + OFF_SOCKET_SK);
}

static __always_inline u16 sock_family(void *sk)
{
	u16 family = 0;

	bpf_probe_read_kernel(&family, sizeof(family), sk + OFF_SKC_FAMILY);
	return family;
}

/*
 * The peer's (local = 0) or the socket's own (local = 1) address and port of an AF_INET/AF_INET6
 * sock, into addr (network order) and *port (host order). Returns the family (addr untouched
 * for other families).
 */
static __always_inline u16 sock_addr(void *sk, int local, u8 *addr, u16 *port)
{
	u16 family = sock_family(sk);
	u16 p = 0;

	if (family == AF_INET_VAL)
		bpf_probe_read_kernel(addr, 4, sk + (local ? OFF_SKC_RCV_SADDR : OFF_SKC_DADDR));
	else if (family == AF_INET6_VAL)
		bpf_probe_read_kernel(addr, 16, sk + (local ? OFF_SKC_V6_RCV_SADDR : OFF_SKC_V6_DADDR));
	else
		return family;
	if (local) {
		bpf_probe_read_kernel(&p, sizeof(p), sk + OFF_SKC_NUM);      /* host order */
		*port = p;
	} else {
		bpf_probe_read_kernel(&p, sizeof(p), sk + OFF_SKC_DPORT);    /* network order */
		*port = (p >> 8) | (p << 8);
	}
	return family;
}

/* A terminal: a char device of the tty majors (see the header comment). */
static __always_inline int tty_major(u32 rdev)
{
	u32 major = rdev >> 20;       /* kernel dev_t: major << 20 | minor */

	return major == 4 || major == 5 || (major >= 136 && major <= 143);
}

/*
 * enum fd_type of a file; for pipes and sockets *ino = i_ino; for sockets *sk = the struct sock.
 * An open file whose inode cannot be read is FD_OTHER, never FD_NONE.
 */
static __always_inline u8 file_type(void *file, u64 *ino, void **sk)
{
	void *inode;
	u16 mode = 0;
	u32 rdev = 0;

	if (!file)
		return FD_NONE;
	inode = read_ptr(file + OFF_FILE_INODE);
	if (!inode || bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_MODE))
		return FD_OTHER;
	switch (mode & S_IFMT_VAL) {
	case S_IFREG_VAL:
		return FD_FILE;
	case S_IFDIR_VAL:
		return FD_DIR;
	case S_IFCHR_VAL:
		bpf_probe_read_kernel(&rdev, sizeof(rdev), inode + OFF_INODE_RDEV);
		return tty_major(rdev) ? FD_TTY : FD_CHAR;
	case S_IFIFO_VAL:
		bpf_probe_read_kernel(ino, sizeof(*ino), inode + OFF_INODE_INO);
		return FD_PIPE;
	case S_IFSOCK_VAL:
		bpf_probe_read_kernel(ino, sizeof(*ino), inode + OFF_INODE_INO);
		*sk = read_ptr(read_ptr(file + OFF_FILE_PRIVATE) + OFF_SOCKET_SK);
		return FD_SOCKET;     /* the caller refines it by the sock's family */
	}
	return FD_OTHER;
}

static __always_inline u8 socket_kind(u16 family)
{
	if (family == AF_INET_VAL || family == AF_INET6_VAL)
		return FD_INET;
	return family == AF_UNIX_VAL ? FD_UNIX : FD_SOCKET;
}

/*
 * fd[0..2] of a task (a BTF task pointer: files, fdt, max_fds and the array pointer are direct
 * loads) into out[], with one probe read of the three slots. Returns 0 when the table is unreadable.
 */
static __always_inline int stdio_files(void *task, void *out[3])
{
	void *files, *fdt, *fdarr;

	if (!task)
		return 0;
	files = *(void *volatile *)(task + OFF_TASK_FILES);
	if (!files)
		return 0;
	fdt = *(void *volatile *)(files + OFF_FILES_FDT);
	if (!fdt || *(volatile u32 *)(fdt + OFF_FDT_MAX_FDS) < 3)
		return 0;
	fdarr = *(void *volatile *)(fdt + OFF_FDT_FD);
	return fdarr && !bpf_probe_read_kernel(out, 3 * sizeof(void *), fdarr);
}

/* fd i of the current task after the exec: type, and the pipe/socket inode, the inet peer. */
static __always_inline void stdio_fd(struct event *e, void *file, int i)
{
	void *sk = 0;
	u64 ino = 0;
	u16 port = 0, family = 0;
	u8 type = file_type(file, &ino, &sk);

	if (type == FD_SOCKET && sk) {
		family = sock_addr(sk, 0, e->fd_addr + 16 * i, &port);
		type = socket_kind(family);
	}
	e->fd_type[i] = type;
	e->fd_ino[i] = ino;
	e->fd_family[i] = family;
	e->fd_port[i] = port;
}

/* Only the type of the parent's fd i (it may be the socket of a pty.spawn over a socket). */
static __always_inline u8 parent_fd(void *file)
{
	void *sk = 0;
	u64 ino = 0;
	u8 type = file_type(file, &ino, &sk);

	return type == FD_SOCKET && sk ? socket_kind(sock_family(sk)) : type;
}

/*
 * ST_STDIO: fds 0-2 of the current task (called after a successful exec: O_CLOEXEC fds are
 * closed, these are what the new image has) and the types of its real parent's fds 0-2.
 */
static __always_inline void read_stdio(struct event *e)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *parent = *(void *volatile *)(task + OFF_TASK_REAL_PARENT);
	void *files[3] = {};
	void *pfiles[3] = {};

	int i;

	__builtin_memset(e->fd_addr, 0, sizeof(e->fd_addr));
	if (!stdio_files(task, files))
		return;
	/* loops, not unrolled: one copy of the classification each (clang took ~1 s compiling six) */
#pragma clang loop unroll(disable)
	for (i = 0; i < 3; i++)
		stdio_fd(e, files[i], i);
	if (stdio_files(parent, pfiles)) {
#pragma clang loop unroll(disable)
		for (i = 0; i < 3; i++)
			e->parent_fd_type[i] = parent_fd(pfiles[i]);
	} else {
		e->parent_fd_type[0] = e->parent_fd_type[1] = e->parent_fd_type[2] = FD_OTHER;
	}
	e->status |= ST_STDIO;
}
