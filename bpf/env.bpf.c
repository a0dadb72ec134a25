// SPDX-License-Identifier: Apache-2.0
/*
 * env.bpf.c - the dynamic loader's variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT) in the
 * environment of a new image, and the credentials around an exec. Part of collector.bpf.c.
 *
 * Where the environment is read: after a successful exec, from the new image's own stack, not
 * from the caller's envp at sys_enter. After the exec, mm->start_stack points at argc, followed
 * by argv[argc], NULL, envp[], NULL (fs/binfmt_elf.c create_elf_tables): the strings the kernel
 * copied, which are what the loader reads. At sys_enter another thread of the caller could
 * rewrite a string between the probe's read and the kernel's copy; after the exec the old
 * threads are gone.
 *
 * The scan is a plain bounded loop over at most MAX_ENV entries: envp pointers are read 8 at a
 * time, and the first ENV_BLOCK bytes of the strings (mm->env_start..env_end) are copied once,
 * so an entry's name is matched with two 8-byte loads from that copy (a probe read per entry
 * doubles the scan's cost per exec: docs/performance.md, section 7); only an entry past the
 * copy costs a probe read of its own. The loop only notes where kept values start; they are read after it,
 * so the loop body stays small for the verifier. bpf_loop (helper 181) would allow a much larger
 * bound,
 * but bcc 0.26 does not relocate the callback: the program loads with a 0 in place of the
 * function pointer and the verifier refuses it ("R2 type=scalar expected=func"). An environment
 * with more entries than MAX_ENV sets ST_ENV_TRUNCATED, so padding the environment to push an
 * LD_PRELOAD past the bound is itself visible.
 *
 * Each variable has two slots: its first occurrence and its last (glibc's loader uses the last
 * LD_PRELOAD / LD_LIBRARY_PATH and every LD_AUDIT; musl's getenv the first). A third occurrence
 * overwrites the "last" slot and sets ST_LD_ENV_CUT, as does a value longer than 255 bytes.
 */

/* little-endian u64 of 8 characters (the loader refuses machines other than x86-64 and arm64) */
#define LE8(a, b, c, d, e, f, g, h)                                                            \
	((u64)(a) | (u64)(b) << 8 | (u64)(c) << 16 | (u64)(d) << 24 | (u64)(e) << 32 |         \
	 (u64)(f) << 40 | (u64)(g) << 48 | (u64)(h) << 56)
#define W_LD_PRELO LE8('L', 'D', '_', 'P', 'R', 'E', 'L', 'O')
#define W_LD_LIBRA LE8('L', 'D', '_', 'L', 'I', 'B', 'R', 'A')
#define W_RY_PATH_ LE8('R', 'Y', '_', 'P', 'A', 'T', 'H', '=')
#define W_LD_AUDIT LE8('L', 'D', '_', 'A', 'U', 'D', 'I', 'T')
#define W_AD_EQ ((u64)'A' | (u64)'D' << 8 | (u64)'=' << 16)
#define ENV_CHUNK 8            /* envp pointers read per probe read */

/* Variable index (0 PRELOAD, 1 LIBRARY_PATH, 2 AUDIT) of "NAME=" at the start of w, else -1;
 * *skip = length of "NAME=". */
static __always_inline int ld_var(const u64 *w, u32 *skip)
{
	if (w[0] == W_LD_PRELO && (w[1] & 0xFFFFFF) == W_AD_EQ) {
		*skip = 11;
		return 0;
	}
	if (w[0] == W_LD_LIBRA && w[1] == W_RY_PATH_) {
		*skip = 16;
		return 1;
	}
	if (w[0] == W_LD_AUDIT && (w[1] & 0xFF) == '=') {
		*skip = 9;
		return 2;
	}
	return -1;
}

/*
 * Remember where an LD_* entry's value starts, in the slot of its first occurrence, else of its
 * last one (a third occurrence overwrites the last and sets ST_LD_ENV_CUT). Memory only: the
 * values are read after the scan (read_ld_values).
 */
static __always_inline void note_ld_value(struct event *e, u64 *value, int var, u64 start)
{
	u32 slot = 2 * var;

	if (slot > LD_SLOTS - 2)
		return;
	if (*(volatile u64 *)&value[slot]) {
		slot += 1;
		if (*(volatile u64 *)&value[slot])
			e->status |= ST_LD_ENV_CUT;      /* a middle occurrence is not kept */
	}
	value[slot] = start;
}

/* The kept values into the record's LD_* slots (ld_len: bytes, NUL included; 0: none). */
static __always_inline void read_ld_values(struct event *e, const u64 *value)
{
	const char *v;
	char more;
	long n;
	int i;

#pragma clang loop unroll(disable)
	for (i = 0; i < LD_SLOTS; i++) {
		v = (const char *)value[i];
		if (!v)
			continue;
		n = bpf_probe_read_user_str(e->ld_env + i * LD_VALUE_SLOT, LD_VALUE_SLOT, v);
		if (n <= 0)
			continue;
		e->ld_len[i] = n;
		more = 0;
		if (n == LD_VALUE_SLOT && !bpf_probe_read_user(&more, 1, v + LD_VALUE_SLOT - 1) && more)
			e->status |= ST_LD_ENV_CUT;
	}
}

/*
 * The environment strings' first ENV_BLOCK bytes into blk; returns how many were copied (0: none,
 * then every entry is read on its own).
 */
static __always_inline u64 copy_env_block(char *blk, void *mm, u64 *start)
{
	u64 end = *(volatile u64 *)(mm + OFF_MM_ENV_END);
	u64 len;

	*start = *(volatile u64 *)(mm + OFF_MM_ENV_START);
	if (end <= *start)
		return 0;
	len = end - *start;
	if (len > ENV_BLOCK)
		len = ENV_BLOCK;
	return bpf_probe_read_user(blk, len, (void *)*start) ? 0 : len;
}

/*
 * The first 16 bytes of the string at p into w: from the block when they lie in it (two loads),
 * else with a probe read (an environment past ENV_BLOCK bytes). Returns 0 when p is too short
 * to be an LD_* entry. Bytes after the string's NUL may be the next string's: harmless, since
 * every name compared ends with '=' before any NUL.
 */
static __always_inline int entry_prefix(const char *blk, u64 len, u64 start, u64 p, u64 *w)
{
	u64 off = p - start;

	if (off + 16 <= len) {
		off &= ENV_BLOCK - 1;
		w[0] = *(const u64 *)(blk + off);
		w[1] = *(const u64 *)(blk + off + 8);
		return 1;
	}
	w[0] = w[1] = w[2] = 0;
	return bpf_probe_read_user_str(w, 17, (const char *)p) >= 10;   /* "LD_AUDIT=" + NUL */
}

/* ST_ENV_READ: the LD_* entries among the first MAX_ENV of the current (new) image's environment. */
static __always_inline void scan_env(struct event *e)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *mm = *(void *volatile *)(task + OFF_TASK_MM);
	struct env_block *blk = env_block();
	u64 ptrs[ENV_CHUNK] = {};
	u64 w[3];
	u64 sp, argc = 0, envp, start = 0, len;
	u64 p = 0;
	u32 skip;
	int i, var;

	__builtin_memset(e->ld_len, 0, sizeof(e->ld_len));
	if (!mm || !blk)
		return;
	__builtin_memset(blk->value, 0, sizeof(blk->value));
	sp = *(volatile u64 *)(mm + OFF_MM_START_STACK);
	if (!sp || bpf_probe_read_user(&argc, sizeof(argc), (void *)sp))
		return;
	envp = sp + 8 * (argc + 2);            /* past argc, argv[argc] and its NULL */
	len = copy_env_block(blk->b, mm, &start);
	e->status |= ST_ENV_READ;
#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_ENV; i++) {
		if (i % ENV_CHUNK == 0 &&
		    bpf_probe_read_user(ptrs, sizeof(ptrs), (void *)(envp + 8 * i)))
			break;
		p = ptrs[i % ENV_CHUNK];
		if (!p)
			break;
		if (!entry_prefix(blk->b, len, start, p, w))
			continue;
		var = ld_var(w, &skip);
		if (var >= 0)
			note_ld_value(e, blk->value, var, p + skip);
	}
	if (i == MAX_ENV) {
		p = 0;
		bpf_probe_read_user(&p, sizeof(p), (void *)(envp + 8 * MAX_ENV));
		if (p)
			e->status |= ST_ENV_TRUNCATED;
	}
	read_ld_values(e, blk->value);
}

/* exec: euid and CapEff of the caller, before the exec (direct BTF loads: task->cred). */
static __always_inline void prev_creds(struct event *e)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *cred = *(void *volatile *)(task + OFF_TASK_CRED);

	if (!cred)
		return;
	e->val[1] = *(volatile u32 *)(cred + OFF_CRED_EUID);
	e->val[2] = *(volatile u64 *)(cred + OFF_CRED_CAP_EFF);
	e->status |= ST_PREV_CREDS;
}

/* euid | egid << 32 of the current task now (after an exec or a set*id call). */
static __always_inline u64 cur_euid_egid(void)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *cred = *(void *volatile *)(task + OFF_TASK_CRED);

	if (!cred)
		return 0;
	return (u64)*(volatile u32 *)(cred + OFF_CRED_EUID) |
	       (u64)*(volatile u32 *)(cred + OFF_CRED_EGID) << 32;
}
