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
 * so an entry that does not start with "LD_" is passed over with three byte loads; only an
 * "LD_" entry (or one past the block) costs probe reads of its own. (A helper call per entry
 * cost ~2 us per exec with a 35-entry environment, bpf_stats.) bpf_loop (helper 181) would allow
 * a much larger bound,
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

/* The value of one LD_* entry into its slot (first occurrence, else the last one). */
static __always_inline void keep_ld_value(struct event *e, int var, const char *value)
{
	u32 slot = 2 * var;
	long n;
	char more = 0;

	if (*(volatile u16 *)&e->ld_len[slot]) {
		slot += 1;
		if (*(volatile u16 *)&e->ld_len[slot])
			e->status |= ST_LD_ENV_CUT;      /* a middle occurrence is not kept */
	}
	if (slot > LD_SLOTS - 1)
		return;
	n = bpf_probe_read_user_str(e->ld_env + slot * LD_VALUE_SLOT, LD_VALUE_SLOT, value);
	if (n <= 0)
		return;
	e->ld_len[slot] = n;
	if (n == LD_VALUE_SLOT && !bpf_probe_read_user(&more, 1, value + LD_VALUE_SLOT - 1) && more)
		e->status |= ST_LD_ENV_CUT;
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
	if (!blk || end <= *start)
		return 0;
	len = end - *start;
	if (len > ENV_BLOCK)
		len = ENV_BLOCK;
	return bpf_probe_read_user(blk, len, (void *)*start) ? 0 : len;
}

/* Whether the string at p can be an LD_* entry: "LD_" in the block, or outside it (unknown). */
static __always_inline int maybe_ld(const char *blk, u64 len, u64 start, u64 p)
{
	u64 off = p - start;

	if (off + 3 > len)
		return 1;
	off &= ENV_BLOCK - 1;
	return blk[off] == 'L' && blk[off + 1] == 'D' && blk[off + 2] == '_';
}

/* ST_ENV_READ: the LD_* entries among the first MAX_ENV of the current (new) image's environment. */
static __always_inline void scan_env(struct event *e)
{
	void *task = (void *)bpf_get_current_task_btf();
	void *mm = *(void *volatile *)(task + OFF_TASK_MM);
	char *blk = env_block();
	u64 ptrs[ENV_CHUNK] = {};
	u64 w[3];
	u64 sp, argc = 0, envp, start = 0, len;
	const char *p = 0;
	u32 skip;
	int i, var;

	__builtin_memset(e->ld_len, 0, sizeof(e->ld_len));
	if (!mm)
		return;
	sp = *(volatile u64 *)(mm + OFF_MM_START_STACK);
	if (!sp || bpf_probe_read_user(&argc, sizeof(argc), (void *)sp))
		return;
	envp = sp + 8 * (argc + 2);            /* past argc, argv[argc] and its NULL */
	len = copy_env_block(blk, mm, &start);
	e->status |= ST_ENV_READ;
	for (i = 0; i < MAX_ENV; i++) {
		if (i % ENV_CHUNK == 0 &&
		    bpf_probe_read_user(ptrs, sizeof(ptrs), (void *)(envp + 8 * i)))
			return;
		p = (const char *)ptrs[i % ENV_CHUNK];
		if (!p)
			return;
		if (blk && !maybe_ld(blk, len, start, (u64)p))
			continue;
		w[0] = w[1] = w[2] = 0;
		if (bpf_probe_read_user_str(w, 17, p) < 10)   /* shorter than "LD_AUDIT=" */
			continue;
		var = ld_var(w, &skip);
		if (var >= 0)
			keep_ld_value(e, var, p + skip);
	}
	p = 0;
	bpf_probe_read_user(&p, sizeof(p), (void *)(envp + 8 * MAX_ENV));
	if (p)
		e->status |= ST_ENV_TRUNCATED;
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
