/* SPDX-License-Identifier: Apache-2.0 */
/*
 * events.h - the one record the CASA collector sends from the kernel to user space.
 *
 * One struct for every kind. The fixed header (up to `path`) is always sent; open records (and
 * the other path kinds: chmod, unlink, truncate) are cut after the used part of `path` plus their
 * base-directory names (written right after the path's NUL); a rename record packs the old path,
 * its names, the new path and its names one after the other from `path`; exec records are sent up
 * to `dir` plus the used part of `dir` (exe, argv and the exec's fd/environment facts follow path
 * at fixed offsets, so an exec's directory names need their own area). Numbers that only one kind
 * has live in val[] (the table at struct event says which).
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
#ifndef MAX_ENV
#define MAX_ENV 256            /* environment entries an exec's scan checks for LD_* variables */
#endif
#define ENV_BLOCK 8192         /* environment bytes the scan copies at once (a power of two) */
#define LD_VARS 3              /* LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT */
#define LD_SLOTS (2 * LD_VARS) /* slot 2v: the first occurrence of variable v; 2v+1: the last */
#define LD_VALUE_SLOT 256      /* a value's bytes kept, NUL included */
#define DNS_READ 288           /* send: payload bytes read when the datagram looks like a DNS query */

enum event_kind {
	EV_EXEC = 1,
	EV_OPEN = 2,
	EV_CONNECT = 3,
	EV_EXIT = 4,
	EV_FORK = 5,
	EV_CHMOD = 6,
	EV_UNLINK = 7,
	EV_RENAME = 8,
	EV_TRUNCATE = 9,
	EV_MEMFD = 10,
	EV_PTRACE = 11,
	EV_VM_READ = 12,
	EV_SEND = 13,
	EV_BIND = 14,
	EV_LISTEN = 15,
	EV_SOCKET = 16,
	EV_SETID = 17,
	EV_CAPSET = 18,
};

enum event_syscall {
	SC_NONE = 0,
	SC_EXECVE = 1,
	SC_EXECVEAT = 2,
	SC_OPENAT = 3,
	SC_OPENAT2 = 4,
	SC_OPEN = 5,
	SC_CONNECT = 6,
	SC_CHMOD = 7,
	SC_FCHMOD = 8,
	SC_FCHMODAT = 9,
	SC_FCHMODAT2 = 10,
	SC_UNLINK = 11,
	SC_UNLINKAT = 12,
	SC_RMDIR = 13,
	SC_RENAME = 14,
	SC_RENAMEAT = 15,
	SC_RENAMEAT2 = 16,
	SC_TRUNCATE = 17,
	SC_FTRUNCATE = 18,
	SC_MEMFD_CREATE = 19,
	SC_PTRACE = 20,
	SC_PROCESS_VM_READV = 21,
	SC_PROCESS_VM_WRITEV = 22,
	SC_SENDTO = 23,
	SC_SENDMSG = 24,
	SC_SENDMMSG = 25,
	SC_BIND = 26,
	SC_LISTEN = 27,
	SC_SOCKET = 28,
	SC_SETUID = 29,
	SC_SETREUID = 30,
	SC_SETRESUID = 31,
	SC_SETGID = 32,
	SC_SETREGID = 33,
	SC_SETRESGID = 34,
	SC_CAPSET = 35,
};

/* exec: what an fd is (fd_type[], parent_fd_type[]) */
enum fd_type {
	FD_NONE = 0,           /* not open */
	FD_FILE = 1,           /* regular file */
	FD_DIR = 2,
	FD_PIPE = 3,           /* FIFO or pipe: fd_ino pairs the two ends */
	FD_TTY = 4,            /* char device of a terminal major: 4, 5, 136-143 */
	FD_CHAR = 5,           /* any other char device (/dev/null) */
	FD_INET = 6,           /* AF_INET / AF_INET6 socket: fd_family, fd_addr, fd_port of the peer */
	FD_UNIX = 7,
	FD_SOCKET = 8,         /* a socket of another family */
	FD_OTHER = 9,          /* block device, symlink, anon inode (eventfd, epoll ...), unreadable */
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
#define ST_ENV_TRUNCATED 0x100 /* exec: the environment has more than MAX_ENV entries */
#define ST_LD_ENV_CUT 0x200    /* exec: an LD_* value was cut, or a variable occurred 3+ times */
#define ST_PREV_CREDS 0x400    /* exec: val[1], val[2] hold euid and CapEff before the exec */
#define ST_STDIO 0x800         /* exec: fd_* hold fds 0-2 after the exec and the parent's types */
#define ST_CONNECTED 0x1000    /* send: no address given; the destination is the socket's peer */
#define ST_FD_PATH 0x2000      /* chmod/truncate via an fd: path is the fd's file (see fd_path) */
#define ST_NEW_PATH_TRUNCATED 0x4000 /* rename: the new path filled its buffer and went on */
#define ST_ENV_READ 0x8000     /* exec: the environment was scanned (ld_len[] is valid) */

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
	u32 pad;                   /* 156 */
	u16 path2_len;             /* 160 rename: bytes of the new path, NUL included */
	u16 dir2_len;              /* 162 rename: bytes of the new path's base-directory names */
	u16 dir2_error;            /* 164 rename: enum dir_error of the new path */
	u16 pad2;                  /* 166 */
	u64 val[4];                /* 168 kind-specific numbers:
	                            *   exec      euid after, euid before, CapEff before (ST_PREV_CREDS)
	                            *   chmod     fd (fchmod)
	                            *   rename    new dirfd
	                            *   truncate  length, fd (ftruncate)
	                            *   ptrace    request, target pid
	                            *   vm_read   target pid
	                            *   send      bytes, socket type, messages (sendmmsg)
	                            *   listen    backlog
	                            *   socket    type, protocol
	                            *   setid     the requested ids (s32 each, -1 unchanged), then
	                            *             euid | egid << 32 after the call
	                            *   capset    effective, permitted, inheritable, target pid */
	char path[MAX_PATH_LEN];     /* 200 as passed by the caller; a path kind's dir names follow its
	                              * NUL; memfd: the name; send: the first DNS_READ payload bytes
	                              * when they look like a DNS query (path_len bytes) */
	char exe[MAX_EXE_LEN];       /* exec only, with ST_EXE_RESOLVED */
	char argv[MAX_ARGS * MAX_ARG_LEN]; /* exec only: slot i at i * MAX_ARG_LEN */
	/* exec only, with ST_STDIO: fds 0-2 of the new image, and the types of its parent's */
	u64 fd_ino[3];             /* pipes and sockets: i_ino */
	u8 fd_addr[3 * 16];        /* FD_INET: the peer's address of fd i at [16 * i], network order */
	u16 fd_family[3];
	u16 fd_port[3];            /* host byte order */
	u8 fd_type[3];             /* enum fd_type */
	u8 parent_fd_type[3];      /* enum fd_type, of the parent's fds 0-2 */
	/* exec only, with ST_ENV_READ: LD_* variables of the new image's environment */
	u16 ld_len[LD_SLOTS];      /* bytes in ld_env slot i, NUL included (0: unused) */
	char ld_env[LD_SLOTS * LD_VALUE_SLOT];
	char dir[MAX_DIR_LEN + DIR_NAME_SLOT]; /* exec only: base-directory names; the slack lets the
	                                        * verifier bound a name read at any offset below
	                                        * MAX_DIR_LEN (and gives an open's names their room) */
};

#define EVENT_HEADER_SIZE 200    /* offsetof(struct event, path) */

#endif /* CASA_EVENTS_H */
