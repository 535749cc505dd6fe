/* lxm-proxy: the forwarder of one proxy device without NAT, as LXD's forkproxy. It listens in
 * one network namespace (the host's for bind=host, the container's for bind=instance) and
 * connects in the other, so that listen=tcp:0.0.0.0:8080 connect=tcp:127.0.0.1:80 reaches the
 * container's own loopback. TCP connections are copied both ways with backpressure (a side is
 * read only while nothing it sent is still queued for the other) and half-closes passed on; UDP
 * gets one connected socket per client address, dropped after an idle time.
 *
 * Run by lxmd, not by hand. It leaves lxmd at once (fork, setsid, fork), so that it outlives an
 * lxmd restart as the container does, and writes its pid to --pidfile. Its first stdout line
 * says how the start went: "ready" once it listens, or "error MESSAGE" (the device, the address
 * and the cause). It ends when the container's init exits (a pidfd), or on SIGTERM, and removes
 * its pidfile then. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "proxy/proxy-spec.h"

/* The size of a TCP read: at most two of these per connection are in flight. */
#define READ_SIZE (64 * 1024)
/* A UDP session without traffic for this long is dropped. */
#define UDP_IDLE_MS (120 * 1000)
/* At most this many UDP sessions at once (per device); a new client beyond it is not served. */
#define UDP_MAX_SESSIONS 1024

struct listener;

/* One direction's endpoint of a TCP connection. */
struct side {
	uv_tcp_t tcp;	    /* the socket */
	struct conn *conn;  /* the connection it belongs to */
	struct side *peer;  /* the other endpoint: what this one reads is written there */
	uv_write_t wreq;    /* the write of what the peer read, while one is in flight */
	uv_shutdown_t sreq; /* the shutdown after the peer's EOF */
	char *wbuf;	    /* the buffer being written here, freed when the write ends */
	bool eof;	    /* this side said EOF (its data all passed on) */
};

/* A proxied TCP connection: the client's socket and the one to the target. */
struct conn {
	struct side client;   /* accepted on the listener */
	struct side target;   /* connected to the target */
	uv_connect_t creq;    /* the connect to the target */
	struct conn *next;    /* in the list of live connections */
	struct conn **pprev;  /* what points at this one in that list */
	int open_handles;     /* handles not yet closed: freed at 0 */
	bool closing;	      /* being closed */
	uint16_t target_port; /* where it connects */
};

/* A UDP client: its own socket connected to the target, and an idle timer. */
struct session {
	uv_udp_t udp;			/* the socket to the target */
	uv_timer_t idle;		/* drops the session when it fires */
	struct listener *l;		/* the listener it came in on */
	struct sockaddr_storage client; /* the client's address */
	struct session *next;		/* in the list of l's sessions */
	int open_handles;		/* handles not yet closed: freed at 0 */
	bool closing;			/* being closed */
};

/* One listening socket: a port of listen=. */
struct listener {
	union {
		uv_handle_t h; /* either */
		uv_tcp_t tcp;  /* for tcp */
		uv_udp_t udp;  /* for udp */
	};
	uint16_t port;		  /* the port it listens on */
	uint16_t target_port;	  /* the connect port it goes to */
	struct session *sessions; /* udp: its clients */
};

/* The forwarder's state. */
static struct {
	uv_loop_t *loop;		/* the loop */
	const char *device;		/* the device's name, for messages */
	const char *listen_spec;	/* listen= as given */
	const char *pidfile;		/* where its pid is, or NULL */
	struct lxm_proxy_addr listen;	/* listen=, parsed */
	struct lxm_proxy_addr connect;	/* connect=, parsed */
	struct sockaddr_storage target; /* connect's address (port set per connection) */
	struct listener *listeners;	/* one per listen port */
	size_t n_listeners;		/* how many */
	struct conn *conns;		/* live TCP connections */
	size_t n_sessions;		/* live UDP sessions */
	uv_signal_t sigterm;		/* SIGTERM: end */
	uv_poll_t init_exit;		/* the container's init exited: end */
	int pidfd;			/* the container's init */
	bool stopping;			/* ending */
} P = { .pidfd = -1 };

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	fprintf(stderr, "%s lxm-proxy[%d] device '%s': ", when, (int)getpid(),
		P.device ? P.device : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The first stdout line, for lxmd. */
static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static struct sockaddr *target_addr(uint16_t port)
{
	if (P.target.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&P.target)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&P.target)->sin_port = htons(port);
	return (struct sockaddr *)&P.target;
}

/* ---- TCP ---- */

static void conn_handle_closed(uv_handle_t *h)
{
	struct side *s = h->data;
	struct conn *c = s->conn;

	if (--c->open_handles == 0)
		free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	uv_close((uv_handle_t *)&c->client.tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->target.tcp, conn_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = malloc(READ_SIZE);
	buf->len = buf->base ? READ_SIZE : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
	struct side *to = req->data, *from = to->peer;

	free(to->wbuf);
	to->wbuf = NULL;
	if (to->conn->closing)
		return;
	if (status < 0) {
		conn_close(to->conn);
		return;
	}
	/* The peer's data is out: read more of it. */
	if (!from->eof && uv_read_start((uv_stream_t *)&from->tcp, on_alloc, on_read) < 0)
		conn_close(to->conn);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct side *to = req->data;
	struct conn *c = to->conn;

	if (c->closing)
		return;
	/* Both ways ended: the connection is done. */
	if (status < 0 || (c->client.eof && c->target.eof))
		conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct side *from = stream->data, *to = from->peer;
	uv_buf_t out;

	if (nread == 0) {
		free(buf->base);
		return;
	}
	if (nread < 0) {
		free(buf->base);
		if (nread != UV_EOF) {
			conn_close(from->conn);
			return;
		}
		/* A half-close: pass it on once what was read is written (uv_shutdown waits). */
		from->eof = true;
		uv_read_stop(stream);
		to->sreq.data = to;
		if (uv_shutdown(&to->sreq, (uv_stream_t *)&to->tcp, on_shutdown) < 0)
			conn_close(from->conn);
		return;
	}
	/* Backpressure: nothing more is read here until the peer took this. */
	uv_read_stop(stream);
	to->wbuf = buf->base;
	to->wreq.data = to;
	out = uv_buf_init(buf->base, (unsigned int)nread);
	if (uv_write(&to->wreq, (uv_stream_t *)&to->tcp, &out, 1, on_written) < 0) {
		free(to->wbuf);
		to->wbuf = NULL;
		conn_close(from->conn);
	}
}

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)&c->client.tcp, on_alloc, on_read) < 0 ||
	    uv_read_start((uv_stream_t *)&c->target.tcp, on_alloc, on_read) < 0)
		conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct conn *c;

	if (status < 0 || P.stopping)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->client.conn = c->target.conn = c;
	c->client.peer = &c->target;
	c->target.peer = &c->client;
	c->client.tcp.data = &c->client;
	c->target.tcp.data = &c->target;
	c->target_port = l->target_port;
	uv_tcp_init(P.loop, &c->client.tcp);
	uv_tcp_init(P.loop, &c->target.tcp);
	c->client.tcp.data = &c->client;
	c->target.tcp.data = &c->target;
	c->open_handles = 2;
	c->next = P.conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &P.conns;
	P.conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->client.tcp) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->client.tcp, 1);
	uv_tcp_nodelay(&c->target.tcp, 1);
	/* This thread is in the connect side's namespace: the socket is made there. */
	c->creq.data = c;
	if (uv_tcp_connect(&c->creq, &c->target.tcp, target_addr(c->target_port), on_connected) < 0)
		conn_close(c);
}

/* ---- UDP ---- */

static void session_handle_closed(uv_handle_t *h)
{
	struct session *s = h->data;

	if (--s->open_handles == 0)
		free(s);
}

static void session_close(struct session *s)
{
	struct session **pp;

	if (s->closing)
		return;
	s->closing = true;
	for (pp = &s->l->sessions; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	P.n_sessions--;
	uv_close((uv_handle_t *)&s->udp, session_handle_closed);
	uv_close((uv_handle_t *)&s->idle, session_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
	session_close(t->data);
}

/* One datagram at a time is in hand: the one buffer serves every socket. */
static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char dgram[65536];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(dgram, sizeof(dgram));
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (b->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* A reply from the target: back to the client through the listening socket. */
static void on_target_dgram(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			    const struct sockaddr *from, unsigned flags)
{
	struct session *s = h->data;
	uv_buf_t out;

	(void)from;
	(void)flags;
	if (nread < 0) {
		session_close(s);
		return;
	}
	if (nread == 0 || s->closing)
		return;
	uv_timer_again(&s->idle);
	out = uv_buf_init(buf->base, (unsigned int)nread);
	/* A datagram that does not fit the socket's buffer now is dropped, as on a network. */
	(void)uv_udp_try_send(&s->l->udp, &out, 1, (const struct sockaddr *)&s->client);
}

static struct session *session_new(struct listener *l, const struct sockaddr *client)
{
	struct session *s;

	if (P.n_sessions >= UDP_MAX_SESSIONS)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->l = l;
	memcpy(&s->client, client,
	       client->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					     : sizeof(struct sockaddr_in));
	uv_udp_init(P.loop, &s->udp);
	uv_timer_init(P.loop, &s->idle);
	s->udp.data = s->idle.data = s;
	s->open_handles = 2;
	s->next = l->sessions;
	l->sessions = s;
	P.n_sessions++;
	/* This thread is in the connect side's namespace: the socket is made there. */
	if (uv_udp_connect(&s->udp, target_addr(l->target_port)) < 0 ||
	    uv_udp_recv_start(&s->udp, on_udp_alloc, on_target_dgram) < 0 ||
	    uv_timer_start(&s->idle, on_idle, UDP_IDLE_MS, UDP_IDLE_MS) < 0) {
		session_close(s);
		return NULL;
	}
	return s;
}

/* A datagram from a client: to the target through its session's socket. */
static void on_client_dgram(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			    const struct sockaddr *from, unsigned flags)
{
	struct listener *l = h->data;
	struct session *s;
	uv_buf_t out;

	(void)flags;
	if (nread <= 0 || !from || P.stopping)
		return;
	for (s = l->sessions; s && !same_addr(&s->client, from); s = s->next)
		;
	if (!s && !(s = session_new(l, from)))
		return;
	uv_timer_again(&s->idle);
	out = uv_buf_init(buf->base, (unsigned int)nread);
	(void)uv_udp_try_send(&s->udp, &out, 1, NULL);
}

/* ---- set-up and end ---- */

static void stop(void)
{
	if (P.stopping)
		return;
	P.stopping = true;
	while (P.conns)
		conn_close(P.conns);
	for (size_t i = 0; i < P.n_listeners; i++) {
		while (P.listeners[i].sessions)
			session_close(P.listeners[i].sessions);
		uv_close(&P.listeners[i].h, NULL);
	}
	uv_close((uv_handle_t *)&P.sigterm, NULL);
	uv_close((uv_handle_t *)&P.init_exit, NULL);
}

static void on_sigterm(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	logmsg("SIGTERM: stopping");
	stop();
}

static void on_init_exit(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)status;
	(void)events;
	logmsg("the container's init exited: stopping");
	stop();
}

/* Opens the socket of listener l (in this thread's network namespace, the listen side's). */
static int open_listener(struct listener *l, bool tcp)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, one = 1, k;

	if (P.listen.family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(l->port);
		inet_pton(AF_INET6, P.listen.addr, &a->sin6_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(l->port);
		inet_pton(AF_INET, P.listen.addr, &a->sin_addr);
		len = sizeof(*a);
	}
	fd = socket(P.listen.family,
		    (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A port whose last connections linger in TIME_WAIT can be listened on again. */
	if (tcp)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || (tcp && listen(fd, 128) < 0)) {
		k = -errno;
		close(fd);
		return k;
	}
	l->h.data = l;
	if (tcp) {
		uv_tcp_init(P.loop, &l->tcp);
		k = uv_tcp_open(&l->tcp, fd);
		if (k == 0)
			k = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
	} else {
		uv_udp_init(P.loop, &l->udp);
		k = uv_udp_open(&l->udp, fd);
		if (k == 0)
			k = uv_udp_recv_start(&l->udp, on_udp_alloc, on_client_dgram);
	}
	l->h.data = l;
	if (k < 0)
		uv_close(&l->h, NULL);
	return k;
}

static int open_ns(const char *path, int *ret)
{
	*ret = open(path, O_RDONLY | O_CLOEXEC);
	return *ret < 0 ? -errno : 0;
}

/* fork, setsid, fork: the forwarder leaves lxmd's session and is re-parented away from it, so
 * that it outlives an lxmd restart. Returns true in the forwarder; in the original process it
 * returns false with the status to exit with (the intermediate's, which exits at once). */
static bool detach(int *ret_status)
{
	int status;
	pid_t pid = fork();

	if (pid < 0) {
		report("error proxy device '%s': fork: %s", P.device, strerror(errno));
		*ret_status = 1;
		return false;
	}
	if (pid > 0) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		*ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		return false;
	}
	if (setsid() < 0) {
		report("error proxy device '%s': setsid: %s", P.device, strerror(errno));
		_exit(1);
	}
	pid = fork();
	if (pid < 0) {
		report("error proxy device '%s': fork: %s", P.device, strerror(errno));
		_exit(1);
	}
	if (pid > 0)
		_exit(0);
	return true;
}

static int write_pidfile(void)
{
	char buf[32];
	int fd, n, k = 0;

	fd = open(P.pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n)
		k = -EIO;
	if (close(fd) < 0 && k == 0)
		k = -errno;
	return k;
}

/* Removes the pidfile when it is still this process's (lxmd may have replaced it), and its
 * directory when that is empty now. */
static void remove_pidfile(void)
{
	char buf[32] = "", *dir;
	int fd;

	if (!P.pidfile)
		return;
	fd = open(P.pidfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(fd);
	if (atoi(buf) != (int)getpid())
		return;
	unlink(P.pidfile);
	dir = strdup(P.pidfile);
	if (dir)
		(void)rmdir(dirname(dir));
	free(dir);
}

/* Everything up to listening: NULL, or the message for lxmd (static or in msg). */
static const char *setup(pid_t init_pid, bool bind_instance, char *msg, size_t size)
{
	char path[64];
	int host_ns = -1, ct_ns = -1, k;
	bool tcp = strcmp(P.listen.protocol, "tcp") == 0;
	const char *why = NULL;

	P.pidfd = (int)syscall(SYS_pidfd_open, init_pid, 0);
	if (P.pidfd < 0) {
		snprintf(msg, size, "the container's init (pid %d): pidfd_open: %s", (int)init_pid,
			 strerror(errno));
		return msg;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)init_pid);
	if ((k = open_ns("/proc/self/ns/net", &host_ns)) < 0 || (k = open_ns(path, &ct_ns)) < 0) {
		snprintf(msg, size, "open the network namespaces: %s", strerror(-k));
		why = msg;
		goto out;
	}
	/* The namespace opened is the container's only if its init is still the process the
	 * pidfd (opened first) refers to. */
	if (syscall(SYS_pidfd_send_signal, P.pidfd, 0, NULL, 0) < 0) {
		why = "the container's init has exited";
		goto out;
	}
	if (bind_instance && setns(ct_ns, CLONE_NEWNET) < 0) {
		snprintf(msg, size, "enter the container's network namespace: %s", strerror(errno));
		why = msg;
		goto out;
	}
	P.listeners = calloc(P.listen.n_ports, sizeof(*P.listeners));
	if (!P.listeners) {
		why = "out of memory";
		goto out;
	}
	for (size_t i = 0; i < P.listen.n_ports; i++) {
		struct listener *l = &P.listeners[i];

		l->port = P.listen.ports[i];
		l->target_port = lxm_proxy_target_port(&P.listen, &P.connect, i);
		k = open_listener(l, tcp);
		if (k < 0) {
			snprintf(msg, size, "listen %s:%s%s%s:%u: %s", P.listen.protocol,
				 P.listen.family == AF_INET6 ? "[" : "", P.listen.addr,
				 P.listen.family == AF_INET6 ? "]" : "", l->port, strerror(-k));
			why = msg;
			goto out;
		}
		P.n_listeners++;
	}
	/* From here on, every socket made (those to the target) is in the connect side's
	 * namespace. */
	if (setns(bind_instance ? host_ns : ct_ns, CLONE_NEWNET) < 0) {
		snprintf(msg, size, "enter the %s network namespace: %s",
			 bind_instance ? "host's" : "container's", strerror(errno));
		why = msg;
	}
out:
	if (host_ns >= 0)
		close(host_ns);
	if (ct_ns >= 0)
		close(ct_ns);
	return why;
}

/* Once it listens, the forwarder needs no privilege: it only accepts, connects (in the
 * namespace it is in) and copies. It keeps uid 0, which owns its pidfile's directory, so it can
 * still remove its pidfile, but drops every capability (and the bounding set). */
static int drop_privileges(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };

	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_capset, &h, data) < 0)
		return -errno;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: lxm-proxy --device NAME --pid INIT_PID --listen tcp|udp:ADDR:PORTS "
		   "--connect tcp|udp:ADDR:PORTS [--bind host|instance] [--instance NAME] "
		   "[--pidfile PATH]\n"
		   "Run by lxmd, not by hand: the forwarder of a proxy device without NAT.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "device", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "pidfile", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *connect_spec = NULL, *bind = "host", *why;
	char msg[512];
	pid_t init_pid = 0;
	int c, status, k;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			break;
		case 'd':
			P.device = optarg;
			break;
		case 'p':
			init_pid = (pid_t)atoi(optarg);
			break;
		case 'b':
			bind = optarg;
			break;
		case 'l':
			P.listen_spec = optarg;
			break;
		case 'c':
			connect_spec = optarg;
			break;
		case 'f':
			P.pidfile = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!P.device || init_pid <= 0 || !P.listen_spec || !connect_spec || optind != argc ||
	    (strcmp(bind, "host") != 0 && strcmp(bind, "instance") != 0)) {
		usage(stderr);
		report("error lxm-proxy: bad usage");
		return 2;
	}
	if ((why = lxm_proxy_addr_parse(P.listen_spec, &P.listen))) {
		report("error proxy device '%s': key 'listen': '%s': %s", P.device, P.listen_spec,
		       why);
		return 1;
	}
	if ((why = lxm_proxy_addr_parse(connect_spec, &P.connect)) ||
	    (why = lxm_proxy_pair_check(&P.listen, &P.connect))) {
		report("error proxy device '%s': key 'connect': '%s': %s", P.device, connect_spec,
		       why);
		return 1;
	}
	P.target.ss_family = (sa_family_t)P.connect.family;
	if (P.connect.family == AF_INET6)
		inet_pton(AF_INET6, P.connect.addr, &((struct sockaddr_in6 *)&P.target)->sin6_addr);
	else
		inet_pton(AF_INET, P.connect.addr, &((struct sockaddr_in *)&P.target)->sin_addr);

	if (!detach(&status))
		return status;
	signal(SIGPIPE, SIG_IGN);
	/* It pins no directory of lxmd's. */
	if (chdir("/") < 0) {
		report("error proxy device '%s': chdir /: %s", P.device, strerror(errno));
		return 1;
	}
	/* A socket per listen port and two per connection: the soft limit of 1024 is too few. */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	P.loop = uv_default_loop();
	why = setup(init_pid, strcmp(bind, "instance") == 0, msg, sizeof(msg));
	if (!why && P.pidfile && (k = write_pidfile()) < 0) {
		snprintf(msg, sizeof(msg), "write %s: %s", P.pidfile, strerror(-k));
		why = msg;
	}
	if (!why && (k = drop_privileges()) < 0) {
		snprintf(msg, sizeof(msg), "drop privileges: %s", strerror(-k));
		why = msg;
		remove_pidfile();
	}
	if (!why) {
		uv_signal_init(P.loop, &P.sigterm);
		uv_poll_init(P.loop, &P.init_exit, P.pidfd);
		if ((k = uv_signal_start(&P.sigterm, on_sigterm, SIGTERM)) < 0 ||
		    (k = uv_poll_start(&P.init_exit, UV_READABLE, on_init_exit)) < 0) {
			snprintf(msg, sizeof(msg), "watch the container's init: %s",
				 uv_strerror(k));
			why = msg;
			remove_pidfile();
		}
	}
	if (why) {
		report("error proxy device '%s': %s", P.device, why);
		return 1;
	}
	report("ready");
	/* lxmd's pipe ends here: later output goes nowhere it would block on. */
	{
		int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null_fd >= 0) {
			dup2(null_fd, STDOUT_FILENO);
			dup2(null_fd, STDIN_FILENO);
			close(null_fd);
		}
	}
	logmsg("listening on %s", P.listen_spec);
	uv_run(P.loop, UV_RUN_DEFAULT);
	remove_pidfile();
	uv_loop_close(P.loop);
	free(P.listeners);
	logmsg("stopped");
	return 0;
}
