// SPDX-License-Identifier: Apache-2.0
/*
 * net.bpf.c - UDP sends, bind, listen and raw/packet sockets of tracked processes. Part of
 * collector.bpf.c (#included at its end). sys_exit only; arguments from the saved registers.
 *
 * Hooks:
 *   sendto(fd, buf, len, flags, addr, addrlen)  sendmsg(fd, msg, flags)  sendmmsg(fd, vec, vlen, flags)
 *       on a socket that is not SOCK_STREAM (TCP destinations are the connect events'), with
 *       an AF_INET/AF_INET6 destination: the address given (unconnected UDP), or, when none is
 *       given (a connected socket), the socket's peer -- then only for a datagram that looks like
 *       a DNS query, so the system resolver's queries (glibc connects its UDP socket, then
 *       sends) are seen without reporting every datagram of a connected flow. When the first
 *       12 bytes are a DNS query header, the first DNS_READ bytes go to user space, which
 *       parses the question name and publishes only its length and a hash.
 *   bind(fd, addr, addrlen)      AF_INET/AF_INET6: the address and port asked for (port 0: the
 *                                port the kernel chose, read from the sock after a success)
 *   listen(fd, backlog)          the socket's own address and port (sk->__sk_common)
 *   socket(family, type, proto)  only AF_PACKET, SOCK_RAW (any family but AF_NETLINK, which is
 *                                how glibc lists interfaces) and the obsolete SOCK_PACKET
 */

#define SOCK_STREAM_VAL 1
#define SOCK_RAW_VAL 3
#define SOCK_PACKET_VAL 10
#define SOCK_TYPE_MASK 0xf
#define AF_NETLINK_VAL 16
#define AF_PACKET_VAL 17
#define DNS_HEADER 12
#define DNS_MIN_QUERY (DNS_HEADER + 1 + 4)   /* header, the root name, qtype and qclass */
#define MAX_SEND_IOV 8         /* iovecs summed for the bytes of a failed sendmsg */
#define MAX_MMSG 16            /* sendmmsg messages whose lengths are summed */
#define MSGHDR_SIZE 56         /* struct user_msghdr; struct mmsghdr adds msg_len (u32) + pad */
#define MMSGHDR_SIZE 64

/* AF_INET/AF_INET6 address and port of a user sockaddr into the record; returns the family. */
static __always_inline u16 user_sockaddr(struct event *e, const u8 *sa)
{
	u16 family = 0;

	if (!sa || bpf_probe_read_user(&family, sizeof(family), sa))
		return 0;
	if (inet_family(family))
		user_inet_addr(e, sa, family);       /* collector.bpf.c, as a connect's */
	return family;
}

/* A DNS query's header: QR 0 and opcode 0 (QUERY), one question, no answers, no authority. */
static __always_inline int dns_query_header(const u8 *h)
{
	return (h[2] & 0xF8) == 0 && h[4] == 0 && h[5] == 1 && h[6] == 0 && h[7] == 0 &&
	       h[8] == 0 && h[9] == 0;
}

/* The first DNS_READ bytes of a datagram that starts like a DNS query (path_len bytes). */
static __always_inline void dns_payload(struct event *e, const void *buf, u64 len)
{
	u8 h[DNS_HEADER];
	u64 n;

	if (len < DNS_MIN_QUERY || bpf_probe_read_user(h, sizeof(h), buf) || !dns_query_header(h))
		return;
	n = len < DNS_READ ? len : DNS_READ;
	n &= 511;
	if (n > DNS_READ)
		n = DNS_READ;
	if (!bpf_probe_read_user(e->path, n, buf))
		e->path_len = n;
}

/* The first message of a sendmsg/sendmmsg: destination pointer, first buffer, bytes asked. */
struct first_msg {
	const u8 *name;
	u32 namelen;
	const void *buf;
	u64 buf_len;
	u64 asked;             /* the iovecs' lengths summed (at most MAX_SEND_IOV) */
};

static __always_inline void read_msghdr(const void *hdr, struct first_msg *m)
{
	u64 h[4] = {};         /* msg_name, msg_namelen, msg_iov, msg_iovlen */
	u64 iov[2];
	int i;

	if (bpf_probe_read_user(h, sizeof(h), hdr))
		return;
	m->name = (const u8 *)h[0];
	m->namelen = (u32)h[1];
	for (i = 0; i < MAX_SEND_IOV && i < h[3]; i++) {
		if (bpf_probe_read_user(iov, sizeof(iov), (void *)(h[2] + 16 * i)))
			break;
		if (i == 0) {
			m->buf = (const void *)iov[0];
			m->buf_len = iov[1];
		}
		m->asked += iov[1];
	}
}

/* sendmmsg: bytes the kernel sent, from the msg_len it wrote into the first `sent` messages. */
static __always_inline u64 mmsg_bytes(const u8 *vec, long sent)
{
	u64 total = 0;
	u32 len;
	int i;

	for (i = 0; i < MAX_MMSG && i < sent; i++) {
		len = 0;
		bpf_probe_read_user(&len, sizeof(len), vec + MMSGHDR_SIZE * i + MSGHDR_SIZE);
		total += len;
	}
	return total;
}

static __always_inline int send_exit(u32 sc, long ret)
{
	struct track *t = current_tracked();
	struct first_msg m = {};
	struct event *e;
	void *regs, *sk;
	u16 type = 0, port = 0;
	u64 vlen = 1;

	if (!t)
		return 0;
	regs = user_regs();
	sk = file_sock(fd_file((s32)SC_ARG(regs, 0)), &type);
	if (!sk || type == SOCK_STREAM_VAL)
		return 0;
	e = start_record(t, 0, EV_SEND, sc, ret);
	if (!e)
		return 0;
	if (sc == SC_SENDTO) {
		m.buf = (const void *)SC_ARG(regs, 1);
		m.asked = m.buf_len = SC_ARG(regs, 2);
		m.name = (const u8 *)SC_ARG(regs, 4);
		m.namelen = (u32)SC_ARG(regs, 5);
	} else {
		read_msghdr((const void *)SC_ARG(regs, 1), &m);
		if (sc == SC_SENDMMSG)
			vlen = SC_ARG(regs, 2);
	}
	if (m.name && m.namelen >= 2) {
		if (!inet_family(user_sockaddr(e, m.name)))
			return 0;                          /* AF_UNIX and other destinations */
	} else {
		e->family = sock_addr(sk, 0, e->addr, &port);
		if (!inet_family(e->family))
			return 0;
		e->port = port;
		e->status |= ST_CONNECTED;
	}
	dns_payload(e, m.buf, m.buf_len);
	if ((e->status & ST_CONNECTED) && !e->path_len)
		return 0;                                  /* connected: DNS queries only */
	if (sc == SC_SENDMMSG)
		e->val[0] = ret >= 0 ? mmsg_bytes((const u8 *)SC_ARG(regs, 1), ret) : m.asked;
	else
		e->val[0] = ret >= 0 ? (u64)ret : m.asked;
	e->val[1] = type;
	e->val[2] = sc == SC_SENDMMSG && ret >= 0 ? (u64)ret : vlen;
	return output_path_record(e);
}

/* ---- bind, listen, socket --------------------------------------------------------------- */

static __always_inline int bind_exit(long ret)
{
	struct event *e = tracked_record(EV_BIND, SC_BIND, ret);
	void *regs, *sk;
	u16 port = 0;

	if (!e)
		return 0;
	regs = user_regs();
	if (!inet_family(user_sockaddr(e, (const u8 *)SC_ARG(regs, 1))))
		return 0;
	if (ret == 0 && e->port == 0) {
		sk = file_sock(fd_file((s32)SC_ARG(regs, 0)), 0);
		if (sk && !bpf_probe_read_kernel(&port, sizeof(port), sk + OFF_SKC_NUM))
			e->port = port;                    /* the ephemeral port the kernel chose */
	}
	return output_header_record(e);
}

/* listen(fd, backlog): the address the socket listens on, once it is an inet one. */
static __always_inline int listen_exit(long ret)
{
	struct event *e = tracked_record(EV_LISTEN, SC_LISTEN, ret);
	void *regs = e ? user_regs() : 0;
	void *sk = regs ? file_sock(fd_file((s32)SC_ARG(regs, 0)), 0) : 0;
	u16 port = 0;

	if (!sk)
		return 0;
	e->family = sock_addr(sk, 1, e->addr, &port);
	if (!inet_family(e->family))
		return 0;
	e->port = port;
	e->val[0] = (s32)SC_ARG(regs, 1);
	return output_header_record(e);
}

static __always_inline int socket_exit(long ret)
{
	struct track *t = current_tracked();
	struct event *e;
	void *regs;
	u32 family, type;

	if (!t)
		return 0;
	regs = user_regs();
	family = (u32)SC_ARG(regs, 0);
	type = (u32)SC_ARG(regs, 1);
	if (family != AF_PACKET_VAL && (type & SOCK_TYPE_MASK) != SOCK_PACKET_VAL &&
	    ((type & SOCK_TYPE_MASK) != SOCK_RAW_VAL || family == AF_NETLINK_VAL))
		return 0;
	e = start_record(t, 0, EV_SOCKET, SC_SOCKET, ret);
	if (!e)
		return 0;
	e->family = family;
	e->val[0] = type;
	e->val[1] = (u32)SC_ARG(regs, 2);
	return output_header_record(e);
}
