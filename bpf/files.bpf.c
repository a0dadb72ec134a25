// SPDX-License-Identifier: Apache-2.0
/*
 * files.bpf.c - chmod, unlink, rename, truncate and memfd_create of tracked processes. Part of
 * collector.bpf.c (#included at its end).
 *
 * Hooks (sys_exit only, like open: the arguments are read back from the saved user registers,
 * so an untracked process pays one tracepoint run and one lookup per call):
 *   chmod(path, mode)  fchmod(fd, mode)  fchmodat(dfd, path, mode)  fchmodat2(dfd, path, mode, flags)
 *   unlink(path)  rmdir(path)  unlinkat(dfd, path, flags)
 *   rename(old, new)  renameat(odfd, old, ndfd, new)  renameat2(odfd, old, ndfd, new, flags)
 *   truncate(path, length)  ftruncate(fd, length)
 *   memfd_create(name, flags)
 * A path is read and resolved as an open's is (user_path: the caller's string, its base
 * directory's names for a relative path). For fchmod and ftruncate the path is the fd's file
 * (fd_path). Failed calls are reported too (`ret` < 0): an attempt is a fact. The calls come in
 * families (path_call_exit, fd_call_exit, rename_exit), one program each (collector.bpf.c), and
 * every family reads and walks its path(s) in one place: a copy of the walk per syscall made the
 * collector's start three times slower.
 */

/*
 * The file behind fd as the path of an fd call: its own name into e->path, then the walk from
 * the file itself (resolve_base with `self`) writes the full path's names after it, leaf first.
 * User space publishes the full path when the walk finished, else the name with abspath "".
 */
static __always_inline void fd_path(struct event *e, int fd)
{
	void *file = fd_file(fd);
	void *dentry = file ? read_ptr(file + OFF_FILE_DENTRY) : 0;
	void *name = dentry ? read_ptr(dentry + OFF_DENTRY_NAME) : 0;
	long n = name ? bpf_probe_read_kernel_str(e->path, DIR_NAME_SLOT, name) : 0;
	u32 len = n > 0 ? ((u32)n & (2 * DIR_NAME_SLOT - 1)) : 0;   /* the mask bounds the area */

	e->path_len = len;
	e->status |= ST_FD_PATH;
	resolve_base(e, e->path + len, fd, 1);
}

/* ---- chmod, unlink, truncate: one path each ---------------------------------------------- */

/* What a path call asked for: the syscall's arguments, sorted out by path_family. */
struct path_call {
	const char *path;
	u64 val;               /* truncate: the length */
	u32 kind;
	u32 sc;
	u32 mode;              /* chmod */
	u32 flags;             /* fchmodat2, unlinkat */
	s32 dirfd;
};

/*
 * The arguments of chmod(path, mode), fchmodat(dfd, path, mode), fchmodat2(dfd, path, mode,
 * flags), unlink(path), unlinkat(dfd, path, flags), rmdir(path), truncate(path, length) into c;
 * 0 for another syscall. Only argument reads: the path is read and walked once, by the caller.
 */
static __always_inline int path_call_args(void *regs, s32 nr, struct path_call *c)
{
	c->dirfd = AT_FDCWD_VAL;
	if (nr == CASA_NR_FCHMODAT || nr == CASA_NR_FCHMODAT2 || nr == CASA_NR_UNLINKAT) {
		c->dirfd = (s32)SC_ARG(regs, 0);
		c->path = (const char *)SC_ARG(regs, 1);
		if (nr == CASA_NR_UNLINKAT) {
			c->kind = EV_UNLINK;
			c->sc = SC_UNLINKAT;
			c->flags = (u32)SC_ARG(regs, 2);
			return 1;
		}
		c->kind = EV_CHMOD;
		c->sc = nr == CASA_NR_FCHMODAT ? SC_FCHMODAT : SC_FCHMODAT2;
		c->mode = (u32)SC_ARG(regs, 2);
		c->flags = nr == CASA_NR_FCHMODAT2 ? (u32)SC_ARG(regs, 3) : 0;
		return 1;
	}
	c->path = (const char *)SC_ARG(regs, 0);
	if (nr == CASA_NR_CHMOD && nr >= 0) {
		c->kind = EV_CHMOD;
		c->sc = SC_CHMOD;
		c->mode = (u32)SC_ARG(regs, 1);
	} else if ((nr == CASA_NR_UNLINK || nr == CASA_NR_RMDIR) && nr >= 0) {
		c->kind = EV_UNLINK;
		c->sc = nr == CASA_NR_UNLINK ? SC_UNLINK : SC_RMDIR;
	} else if (nr == CASA_NR_TRUNCATE) {
		c->kind = EV_TRUNCATE;
		c->sc = SC_TRUNCATE;
		c->val = SC_ARG(regs, 1);
	} else {
		return 0;
	}
	return 1;
}

static __always_inline int path_call_exit(s32 nr, long ret)
{
	struct track *t = current_tracked();
	struct path_call c = {};
	struct event *e;
	void *regs;

	if (!t)
		return 0;
	regs = user_regs();
	if (!path_call_args(regs, nr, &c))
		return 0;
	e = start_record(t, 0, c.kind, c.sc, ret);
	if (!e)
		return 0;
	e->dirfd = c.dirfd;
	e->mode = c.mode;
	e->flags = c.flags;
	e->val[0] = c.val;
	user_path(e, c.path, c.dirfd);
	return output_path_record(e);
}

/* fchmod(fd, mode) and ftruncate(fd, length): the path is the fd's file (fd_path). */
static __always_inline int fd_call_exit(s32 nr, long ret)
{
	int truncate = nr == CASA_NR_FTRUNCATE;
	struct event *e = tracked_record(truncate ? EV_TRUNCATE : EV_CHMOD,
					 truncate ? SC_FTRUNCATE : SC_FCHMOD, ret);
	void *regs;
	s32 fd;

	if (!e)
		return 0;
	regs = user_regs();
	fd = (s32)SC_ARG(regs, 0);
	if (truncate) {
		e->val[0] = SC_ARG(regs, 1);           /* length */
		e->val[1] = fd;
	} else {
		e->val[0] = fd;
		e->mode = (u32)SC_ARG(regs, 1);
	}
	fd_path(e, fd);
	return output_path_record(e);
}

/* ---- rename ----------------------------------------------------------------------------- */

/*
 * Both paths resolved: the old one as an open's (user_path), the new one packed right after
 * the old one's names, with its own names after its NUL (path2_len, dir2_len, dir2_error).
 * The offsets are masked so the verifier can bound every write (two_path_record has the room).
 */
static __always_inline int rename_exit(u32 sc, long ret)
{
	struct event *e = tracked_record_in(1, EV_RENAME, sc, ret);
	void *regs;
	const char *newpath;
	char *area;
	u64 off, len2;
	long n;
	int newdfd = AT_FDCWD_VAL;
	char more = 0;

	if (!e)
		return 0;
	regs = user_regs();
	if (sc == SC_RENAME) {
		user_path(e, (const char *)SC_ARG(regs, 0), AT_FDCWD_VAL);
		newpath = (const char *)SC_ARG(regs, 1);
	} else {
		e->dirfd = (s32)SC_ARG(regs, 0);
		newdfd = (s32)SC_ARG(regs, 2);
		if (sc == SC_RENAMEAT2)
			e->flags = (u32)SC_ARG(regs, 4);
		user_path(e, (const char *)SC_ARG(regs, 1), e->dirfd);
		newpath = (const char *)SC_ARG(regs, 3);
	}
	e->val[0] = (s64)newdfd;
	off = (e->path_len & (MAX_PATH_LEN - 1)) + (e->dir_len & (MAX_DIR_LEN - 1));
	area = e->path + off;
	n = bpf_probe_read_user_str(area, MAX_PATH_LEN - 1, newpath);
	len2 = n > 0 ? ((u64)n & (MAX_PATH_LEN - 1)) : 0;
	e->path2_len = len2;
	if (n == MAX_PATH_LEN - 1 && !bpf_probe_read_user(&more, 1, newpath + MAX_PATH_LEN - 2) && more)
		e->status |= ST_NEW_PATH_TRUNCATED;
	if (len2 > 1 && area[0] != '/')
		resolve_base_to(&e->dir2_len, &e->dir2_error, area + len2, newdfd, 0);
	off += len2 + (e->dir2_len & (MAX_DIR_LEN - 1));
	return output_record(e, EVENT_HEADER_SIZE + off);
}

/* ---- memfd_create ------------------------------------------------------------------------ */

static __always_inline int memfd_exit(long ret)
{
	struct event *e = tracked_record(EV_MEMFD, SC_MEMFD_CREATE, ret);
	void *regs;
	long n;

	if (!e)
		return 0;
	regs = user_regs();
	e->flags = (u32)SC_ARG(regs, 1);
	/* the kernel takes at most 249 bytes (MFD_NAME_MAX_LEN); a longer name fails with EINVAL */
	n = bpf_probe_read_user_str(e->path, DIR_NAME_SLOT - 1, (const char *)SC_ARG(regs, 0));
	e->path_len = n > 0 ? n : 0;
	return output_path_record(e);
}
