/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h - the one record the CASA collector sends from the kernel to user space.
 *
 * One struct for every kind. The fixed header (up to `path`) is always sent; open records are
 * cut after the used part of `path`, exec records are sent whole (exe and argv follow path).
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
	char pad[4];                 /* 140 keeps path 8-aligned */
	char path[MAX_PATH_LEN];     /* 144 as passed by the caller */
	char exe[MAX_EXE_LEN];       /* exec only, with ST_EXE_RESOLVED */
	char argv[MAX_ARGS * MAX_ARG_LEN]; /* exec only: slot i at i * MAX_ARG_LEN */
};

#define EVENT_HEADER_SIZE 144    /* offsetof(struct event, path) */

#endif /* CASA_EVENTS_H */
