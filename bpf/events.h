/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h - the one record the CASA collector sends from the kernel to user space.
 *
 * One struct for every kind. The fixed header (up to `path`) is always sent; open records are
 * cut after the used part of `path` plus their base-directory names (written right after the
 * path's NUL), exec records are sent up to `dir` plus the used part of `dir` (exe and argv
 * follow path at fixed offsets, so an exec's directory names need their own area).
 *
 * Base directory of a relative path (docs/collector.md, "Paths"): the kernel walks from the
 * process's cwd (AT_FDCWD) or the dirfd's directory up to the process's root and writes the
 * names it passes, leaf first, each NUL-terminated (`dir_len` bytes in all); user space reverses
 * and joins them. `dir_error` says whether the walk finished (DIR_OK) or why not.
 * collector/decode.py mirrors the offsets (tests/collector/test_decode.py checks them against
 * the struct bcc builds from this file). Limits come in as -D cflags from config/casa.json.
 * Types are bcc's u64/u32/... (kernel types) so bcc can build the ctypes class itself; argv is
 * one flat array because bcc's type mapper does not read two-dimensional arrays.
 */
#ifndef CASA_EVENTS_H
#define CASA_EVENTS_H

#ifndef MAX_ARGS
#define MAX_ARGS 16            /* argv items copied per exec */
#endif
#ifndef MAX_ARG_LEN
#define MAX_ARG_LEN 128        /* bytes per argv item, NUL included */
#endif
#ifndef MAX_PATH_LEN
#define MAX_PATH_LEN 4096      /* PATH_MAX: open/exec paths arrive whole */
#endif
#ifndef MAX_EXE_LEN
#define MAX_EXE_LEN 256        /* a dentry name (NAME_MAX 255) plus NUL */
#endif
#define COMM_LEN 16
#ifndef MAX_DIR_LEN
#define MAX_DIR_LEN MAX_PATH_LEN   /* bytes of base-directory names, NULs included (power of two) */
#endif
#ifndef MAX_DIR_STEPS
#define MAX_DIR_STEPS 32       /* walk steps: a directory name or a mount crossing each */
#endif
#define DIR_NAME_SLOT 256      /* one name read at most (NAME_MAX 255 plus NUL) */

enum event_kind {
	EV_EXEC = 1,
	EV_OPEN = 2,
	EV_CONNECT = 3,
	EV_EXIT = 4,
	EV_FORK = 5,
};

enum event_syscall {
	SC_NONE = 0,
	SC_EXECVE = 1,
	SC_EXECVEAT = 2,
	SC_OPENAT = 3,
	SC_OPENAT2 = 4,
	SC_OPEN = 5,
	SC_CONNECT = 6,
};

/* bits of event.status */
#define ST_ARGV_TRUNCATED 0x1  /* more than MAX_ARGS items, or an item longer than MAX_ARG_LEN */
#define ST_ARGV_FLAT 0x2       /* argv holds the raw NUL-separated args area of the new image */
#define ST_PROVISIONAL 0x4     /* tracked only because the post-exec comm is a root candidate */
#define ST_EXE_RESOLVED 0x8    /* exe holds the dentry name of the file behind an exec'd fd */
#define ST_EXE_DELETED 0x10    /* ... and that file has no links left (memfd, unlinked file) */
#define ST_CAPS_VALID 0x20     /* cap_eff and seccomp were read after the exec */
#define ST_PATH_TRUNCATED 0x40 /* path filled its buffer and the caller's string went on */
#define ST_IDENTITY 0x80       /* ino and dev hold the opened file's / the new image's identity */

/* event.dir_error: the base-directory walk of a relative path */
enum dir_error {
	DIR_NONE = 0,          /* no walk: the path is absolute (or was unreadable) */
	DIR_OK = 1,            /* reached the process's root: dir_len bytes of names are the base */
	DIR_TOO_DEEP = 2,      /* more than MAX_DIR_STEPS names and mount crossings */
	DIR_TOO_LONG = 3,      /* the names need more than MAX_DIR_LEN - 1 bytes */
	DIR_UNREADABLE = 4,    /* a kernel pointer on the way was NULL or unreadable (no fs, ...) */
	DIR_BAD_FD = 5,        /* dirfd is not an open file descriptor */
	DIR_NOT_DIR = 6,       /* dirfd is open but not a directory */
	DIR_DELETED = 7,       /* the base directory was removed (rmdir of the cwd) */
	DIR_OUTSIDE_ROOT = 8,  /* the walk left the mount tree without meeting the process's root */
};

struct event {
	u64 ts_ns;                 /*   0 bpf_ktime_get_boot_ns(); user space adds the boot epoch */
	u64 flags;                 /*   8 open flags (openat2: how.flags) / execveat flags */
	u64 cap_eff;               /*  16 exec: cred->cap_effective after the exec */
	u32 kind;                  /*  24 enum event_kind */
	u32 syscall;               /*  28 enum event_syscall */
	u32 tgid;                  /*  32 process (kernel tgid) */
	u32 tid;                   /*  36 thread (kernel pid) that made the call */
	u32 ppid;                  /*  40 real_parent->tgid, BTF offsets */
	u32 uid;                   /*  44 real uid */
	u32 root;                  /*  48 tgid of the tracked root (tracked map) */
	u32 depth;                 /*  52 fork depth below the root (tracked map) */
	s32 ret;                   /*  56 syscall return: fd / 0 / -errno */
	s32 dirfd;                 /*  60 openat/execveat dirfd; AT_FDCWD (-100) otherwise */
	u32 mode;                  /*  64 open mode */
	u32 exit_code;             /*  68 exit: task->exit_code (wait(2) status) */
	u32 child_tgid;            /*  72 fork: the new process */
	s32 seccomp;               /*  76 exec: seccomp.mode after the exec */
	u16 family;                /*  80 connect: AF_INET / AF_INET6 */
	u16 port;                  /*  82 connect: host byte order */
	u8 addr[16];               /*  84 connect: network byte order, 4 or 16 bytes used */
	u16 argc;                  /* 100 argv slots filled (ST_ARGV_FLAT: bytes in argv) */
	u16 path_len;              /* 102 bytes in path, NUL included (0: unreadable) */
	u32 status;                /* 104 ST_* bits */
	char comm[COMM_LEN];         /* 108 comm at the call (exec: before the exec) */
	char new_comm[COMM_LEN];     /* 124 exec: comm after the exec */
	u16 dir_len;               /* 140 bytes of base-directory names (leaf first, NUL each) */
	u16 dir_error;             /* 142 enum dir_error */
	u64 ino;                   /* 144 with ST_IDENTITY: inode number (i_ino) */
	u32 dev;                   /* 152 with ST_IDENTITY: i_sb->s_dev (kernel dev_t: major << 20 | minor) */
	u32 pad;                   /* 156 keeps path 8-aligned */
	char path[MAX_PATH_LEN];     /* 160 as passed by the caller; an open's dir names follow its NUL */
	char exe[MAX_EXE_LEN];       /* exec only, with ST_EXE_RESOLVED */
	char argv[MAX_ARGS * MAX_ARG_LEN]; /* exec only: slot i at i * MAX_ARG_LEN */
	char dir[MAX_DIR_LEN + DIR_NAME_SLOT]; /* exec only: base-directory names; the slack lets the
	                                        * verifier bound a name read at any offset below
	                                        * MAX_DIR_LEN (and gives an open's names their room) */
};

#define EVENT_HEADER_SIZE 160    /* offsetof(struct event, path) */

#endif /* CASA_EVENTS_H */
