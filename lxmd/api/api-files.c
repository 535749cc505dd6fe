/* /1.0/instances/NAME/files: push (POST), pull (GET) and delete (DELETE) a file, directory or
 * symlink inside an instance, as LXD does (extensions file_delete, file_append,
 * directory_manipulation, file_symlinks).
 *
 * Every path is resolved inside the instance's rootfs with openat2(RESOLVE_IN_ROOT): a symlink
 * the container made resolves against the container's /, and ".." stops there, so nothing in the
 * container's tree can make lxmd open a host file. The rootfs is the host directory that the
 * container sees as / through an idmapped mount, so ids on disk are the container's ids. For a
 * running container that also means that what it mounted itself (its /run tmpfs, /proc, ...) is
 * not seen here: these are the files of its root filesystem underneath, as LXD shows them for a
 * stopped one.
 *
 * A pushed file is streamed into a temporary file beside the target (".lxm-push.XXXXXXXXXXXX"),
 * then fchown/fchmod, fsync and renameat into place: the target changes at once or not at all,
 * and a body cut short removes the temporary file and leaves the old content. Only append
 * writes in place. All disk work runs on libuv's thread pool, one step at a time per request;
 * the loop thread only passes pieces between the socket and the pool.
 *
 * A virtual machine's files are the guest's: its agent (vm/agent-pool.h) reads and writes them
 * over FILE_GET and FILE_PUT sessions, streamed with the agent's flow control, and the guest's
 * shell removes them (the protocol has no removal). The VM must be running. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "cleanup.h"
#include "daemon.h"
#include "db/db.h"
#include "json.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "vm/agent-pool.h"

/* Bytes read from a pulled file per step; one such buffer per pull. */
#define PULL_CHUNK (256 * 1024)
/* Attempts at a temporary name before giving up (they are random: a clash means foul play). */
#define TMP_ATTEMPTS 16

enum file_type {
	FILE_REGULAR,	/* X-LXD-type: file */
	FILE_DIRECTORY, /* X-LXD-type: directory */
	FILE_SYMLINK,	/* X-LXD-type: symlink (the body is the target) */
};

enum file_verb {
	VERB_PUSH,
	VERB_PULL,
	VERB_DELETE,
	_VERB_MAX,
};

/* "push to 'c1': /etc/x: open: Permission denied" */
static const char *const verb_text[_VERB_MAX] = {
	[VERB_PUSH] = "push to",
	[VERB_PULL] = "pull from",
	[VERB_DELETE] = "delete from",
};

struct file_job {
	uv_work_t work;		/* libuv's */
	struct lxmd *d;		/* the daemon */
	struct lxmd_request *r; /* the request; NULL once the client went away or was answered */
	enum file_verb verb;	/* what the request does */
	bool busy;		/* a step is queued on the thread pool */
	char *name;		/* the instance */
	char *rootfs;		/* its rootfs directory on the host */
	char *path;		/* the path in the instance, absolute ("/root/f.txt") */
	char *parent;		/* push, delete: the directory holding it ("/root") */
	char *leaf;		/* push, delete: its name in there ("f.txt") */

	/* push */
	enum file_type type; /* what to create */
	bool append;	     /* X-LXD-write: append: write in place at the end */
	mode_t mode;	     /* X-LXD-mode, else the old file's, else 0644 / 0755 */
	uid_t uid;	     /* X-LXD-uid, else the old file's, else 0 */
	gid_t gid;	     /* X-LXD-gid, else the old file's, else 0 */
	bool has_mode;	     /* the client sent X-LXD-mode */
	bool has_uid;	     /* ... X-LXD-uid */
	bool has_gid;	     /* ... X-LXD-gid */
	bool existed;	     /* the target existed when the push began */
	int dir_fd;	     /* the parent directory, resolved in the rootfs, or -1 */
	int fd;		   /* the temporary file (or the one appended to; pull: the file), or -1 */
	char tmp[32];	   /* the temporary entry's name in dir_fd, "" when there is none */
	char *target;	   /* symlink push: the link's target (the body) */
	size_t target_len; /* bytes in target */

	/* push and pull: the piece being written or read */
	char *data;  /* the buffer */
	size_t len;  /* bytes in it */
	ssize_t got; /* pull: bytes the last read gave */

	/* pull */
	struct stat st;	 /* what the path is */
	json_t *entries; /* a directory's entry names */
	uint64_t left;	 /* a file's bytes still to send */
	char *link;	 /* a symlink's target */
	size_t link_len; /* bytes in link */

	/* VM: the guest's agent does the work */
	bool vm;			       /* the instance is a virtual machine */
	bool starting;			       /* inside vm_job_start() */
	struct lxm_error *start_err;	       /* ... an error for it to answer with */
	struct lxmd_vm_agent_wait *agent_wait; /* waiting for the agent */
	struct lxm_agent *agent;	       /* the agent, once it answered */
	struct lxm_agent_session *as;	       /* the FILE_GET or FILE_PUT session */
	char *stash;			       /* push: a piece that came before the session */
	size_t stash_len;		       /* bytes in stash */
	bool body_done;			       /* push: the body is complete */
	bool head_sent;			       /* pull: the response head went out */
	unsigned writes;		       /* pull: pieces not yet written to the socket */
	uint32_t fi_type;		       /* pull: LXM_AGENT_FILE_* of the path */
	char *extra;			       /* pull: the X-LXD-* headers, one a line */
	size_t cap;			       /* pull: bytes allocated in data (a listing) */

	/* what a worker step found */
	int result;	    /* 0 or -errno */
	const char *step;   /* what failed ("open", "write", ...) */
	const char *reason; /* a sentence that replaces "step: strerror", or NULL */
};

static void job_free(struct file_job *j)
{
	if (!j)
		return;
	/* Workers close what they open; this is the fallback for a step that never ran. */
	if (j->fd >= 0)
		close(j->fd);
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	free(j->name);
	free(j->rootfs);
	free(j->path);
	free(j->parent);
	free(j->leaf);
	free(j->target);
	free(j->data);
	free(j->link);
	free(j->extra);
	lxm_error_free(j->start_err);
	json_decref(j->entries);
	free(j);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct file_job *, job_free)

static int status_for_errno(int e)
{
	switch (e) {
	case ENOENT:
		return 404;
	case EACCES:
	case EPERM:
		return 403;
	case ENOTDIR:
	case EISDIR:
	case ELOOP:
	case EEXIST:
	case ENOTEMPTY:
	case EINVAL:
	case ENAMETOOLONG:
	case EXDEV:
		return 400;
	default:
		return 500;
	}
}

/* The error of a failed worker step, in the request's words. */
static struct lxm_error *job_error(const struct file_job *j)
{
	struct lxm_error *err = NULL;
	int e = -j->result;

	if (j->reason)
		lxm_error_set(&err, j->result, status_for_errno(e), "%s '%s': %s: %s",
			      verb_text[j->verb], j->name, j->path, j->reason);
	else
		lxm_error_setx(&err, j->result, status_for_errno(e), "%s '%s': %s: %s",
			       verb_text[j->verb], j->name, j->path, j->step);
	return err;
}

/* Sets the step's result with a sentence of its own; returns it. */
static int job_fail(struct file_job *j, int result, const char *reason)
{
	j->result = result;
	j->reason = reason;
	return result;
}

static int job_queue(struct file_job *j, uv_work_cb work, uv_after_work_cb after)
{
	int k;

	j->work.data = j;
	k = uv_queue_work(j->d->loop, &j->work, work, after);
	if (k == 0)
		j->busy = true;
	return k;
}

/* ---- worker side: resolution inside the rootfs ---- */

/* openat2() with path resolved as if root_fd were "/": symlinks resolve against it, ".." stops
 * at it, and /proc magic links are refused. */
static int open_in_root(int root_fd, const char *path, int flags, mode_t mode)
{
	return lxm_openat2(root_fd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

static int open_rootfs(struct file_job *j)
{
	int fd;

	j->step = "open root filesystem";
	fd = open(j->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Opens the target's parent directory (dir_fd) and looks at what the target is now. */
static int push_resolve(struct file_job *j)
{
	_cleanup_close_ int root = -1;
	struct stat st;
	int k;

	root = open_rootfs(j);
	if (root < 0)
		return root;
	j->step = "open parent directory";
	k = open_in_root(root, j->parent, O_PATH | O_DIRECTORY, 0);
	if (k < 0)
		return k;
	j->dir_fd = k;

	j->step = "stat";
	if (fstatat(j->dir_fd, j->leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return -errno;
		j->existed = false;
	} else {
		j->existed = true;
		/* Never through a symlink: replacing one takes type symlink, the file it points
		 * at takes its own path. */
		if (S_ISLNK(st.st_mode) && j->type == FILE_REGULAR)
			return job_fail(j, -ELOOP,
					"is a symbolic link (push to its target, or delete it "
					"first)");
		if (S_ISDIR(st.st_mode) && j->type != FILE_DIRECTORY)
			return job_fail(j, -EISDIR, "is a directory");
		if (!S_ISDIR(st.st_mode) && j->type == FILE_DIRECTORY)
			return job_fail(j, -EEXIST, "exists and is not a directory");
		/* A replaced file keeps what the client did not say otherwise. */
		if (j->type == FILE_REGULAR && !j->append && S_ISREG(st.st_mode)) {
			if (!j->has_mode)
				j->mode = st.st_mode & 07777;
			if (!j->has_uid)
				j->uid = st.st_uid;
			if (!j->has_gid)
				j->gid = st.st_gid;
		}
	}
	return 0;
}

/* Makes a name for a new entry in dir_fd with create(); retried while the name is taken. */
static int with_tmp_name(struct file_job *j, int (*create)(struct file_job *j))
{
	char rnd[13];
	int k;

	for (int i = 0; i < TMP_ATTEMPTS; i++) {
		k = lxm_random_hex(rnd, 6);
		if (k < 0)
			return k;
		snprintf(j->tmp, sizeof(j->tmp), ".lxm-push.%s", rnd);
		k = create(j);
		if (k != -EEXIST)
			break;
	}
	if (k < 0)
		j->tmp[0] = '\0';
	return k;
}

static int create_tmp_file(struct file_job *j)
{
	int fd = open_in_root(j->dir_fd, j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);

	if (fd < 0)
		return fd;
	j->fd = fd;
	return 0;
}

static int create_tmp_symlink(struct file_job *j)
{
	return symlinkat(j->target, j->dir_fd, j->tmp) < 0 ? -errno : 0;
}

/* Opens what the body goes to: a temporary file, or the file to append to. */
static int push_open(struct file_job *j)
{
	struct stat st;
	int k;

	if (j->fd >= 0)
		return 0;
	if (j->dir_fd < 0 && (k = push_resolve(j)) < 0)
		return k;
	j->step = "create temporary file";
	if (!j->append)
		return with_tmp_name(j, create_tmp_file);

	j->step = "open";
	k = open_in_root(j->dir_fd, j->leaf,
			 O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
			 j->mode);
	if (k < 0)
		return k;
	j->fd = k;
	if (fstat(j->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return job_fail(j, -EINVAL, "is not a regular file: cannot append to it");
	return 0;
}

/* Sets owner and mode: all of them on something new, only what the client sent on something
 * that stays (a directory, a file appended to). Ownership first: chown clears set-id bits that
 * chmod then sets. */
static int apply_owner_mode(struct file_job *j, int fd, bool fresh)
{
	uid_t uid = fresh || j->has_uid ? j->uid : (uid_t)-1;
	gid_t gid = fresh || j->has_gid ? j->gid : (gid_t)-1;

	j->step = "set owner";
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		return -errno;
	j->step = "set mode";
	if ((fresh || j->has_mode) && fchmod(fd, j->mode) < 0)
		return -errno;
	return 0;
}

static int push_finish_file(struct file_job *j)
{
	bool fresh = !j->append || !j->existed;
	int k;

	k = push_open(j);
	if (k < 0)
		return k;
	k = apply_owner_mode(j, j->fd, fresh);
	if (k < 0)
		return k;
	j->step = "sync";
	if (fsync(j->fd) < 0)
		return -errno;
	if (j->append)
		return 0;
	j->step = "rename into place";
	if (renameat(j->dir_fd, j->tmp, j->dir_fd, j->leaf) < 0)
		return -errno;
	j->tmp[0] = '\0';
	return 0;
}

static int push_finish_directory(struct file_job *j)
{
	bool created;
	int k;

	if ((k = push_resolve(j)) < 0)
		return k;
	j->step = "create directory";
	created = mkdirat(j->dir_fd, j->leaf, 0700) == 0;
	if (!created && errno != EEXIST)
		return -errno;
	j->step = "open directory";
	k = open_in_root(j->dir_fd, j->leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	if (k == -ELOOP || k == -ENOTDIR)
		return job_fail(j, -EEXIST, "exists and is not a directory");
	if (k < 0)
		return k;
	j->fd = k;
	return apply_owner_mode(j, j->fd, created);
}

static int push_finish_symlink(struct file_job *j)
{
	int k;

	if ((k = push_resolve(j)) < 0)
		return k;
	j->step = "create symlink";
	k = with_tmp_name(j, create_tmp_symlink);
	if (k < 0)
		return k;
	j->step = "set owner";
	if (fchownat(j->dir_fd, j->tmp, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	j->step = "rename into place";
	if (renameat(j->dir_fd, j->tmp, j->dir_fd, j->leaf) < 0)
		return -errno;
	j->tmp[0] = '\0';
	return 0;
}

/* Removes a temporary entry left behind and closes the job's descriptors. */
static void job_cleanup(struct file_job *j)
{
	if (j->tmp[0] && j->dir_fd >= 0 && unlinkat(j->dir_fd, j->tmp, 0) < 0 && errno != ENOENT)
		j->result = j->result < 0 ? j->result : -errno;
	j->tmp[0] = '\0';
	if (j->fd >= 0)
		close(TAKE_FD(j->fd));
	if (j->dir_fd >= 0)
		close(TAKE_FD(j->dir_fd));
}

static void push_write_work(uv_work_t *w)
{
	struct file_job *j = w->data;

	j->result = push_open(j);
	if (j->result < 0)
		return;
	j->step = "write";
	j->result = lxm_write_all(j->fd, j->data, j->len);
}

static void push_finish_work(uv_work_t *w)
{
	struct file_job *j = w->data;

	switch (j->type) {
	case FILE_REGULAR:
		j->result = push_finish_file(j);
		break;
	case FILE_DIRECTORY:
		j->result = push_finish_directory(j);
		break;
	case FILE_SYMLINK:
		j->result = push_finish_symlink(j);
		break;
	}
	job_cleanup(j);
}

static void cleanup_work(uv_work_t *w)
{
	job_cleanup(w->data);
}

/* ---- loop side: push ---- */

static void free_after_work(uv_work_t *w, int status)
{
	job_free(w->data);
}

/* The job ends: descriptors and a temporary file are dropped on the thread pool. */
static void job_end(struct file_job *j)
{
	j->r = NULL;
	if (j->fd < 0 && j->dir_fd < 0 && !j->tmp[0]) {
		job_free(j);
		return;
	}
	if (job_queue(j, cleanup_work, free_after_work) < 0) {
		log_warn("%s '%s': %s: cannot queue clean-up", verb_text[j->verb], j->name,
			 j->path);
		job_free(j);
	}
}

/* Answers with an error and ends the job. */
static void job_respond_error(struct file_job *j, struct lxm_error *err)
{
	struct lxmd_request *r = j->r;

	j->r = NULL;
	if (r)
		lxmd_respond_error(r, err);
	else
		lxm_error_free(err);
	job_end(j);
}

static void push_write_done(uv_work_t *w, int status)
{
	struct file_job *j = w->data;

	j->busy = false;
	free(TAKE_PTR(j->data));
	if (!j->r) {
		job_end(j);
		return;
	}
	if (j->result < 0) {
		job_respond_error(j, job_error(j));
		return;
	}
	lxmd_request_body_resume(j->r);
}

/* The last step of a push or a delete: answers with an empty sync response or the job's error,
 * and frees the job. */
static void job_done_sync(uv_work_t *w, int status)
{
	struct file_job *j = w->data;
	struct lxmd_request *r = TAKE_PTR(j->r);

	j->busy = false;
	if (r && j->result < 0)
		lxmd_respond_error(r, job_error(j));
	else if (r)
		lxmd_respond_sync(r, json_object(), NULL);
	job_free(j);
}

static void push_body(struct lxmd_request *r, char *data, size_t len)
{
	struct file_job *j = r->defer_data;
	struct lxm_error *err = NULL;
	int k;

	switch (j->type) {
	case FILE_REGULAR:
		j->data = data;
		j->len = len;
		k = job_queue(j, push_write_work, push_write_done);
		if (k < 0) {
			free(TAKE_PTR(j->data));
			lxm_error_set(&err, k, 500, "%s '%s': %s: queue write: %s",
				      verb_text[j->verb], j->name, j->path, uv_strerror(k));
			job_respond_error(j, err);
		}
		return;
	case FILE_SYMLINK:
		if (len >= PATH_MAX - j->target_len) {
			free(data);
			lxm_error_set(&err, -ENAMETOOLONG, 400,
				      "%s '%s': %s: symlink target is longer than %d bytes",
				      verb_text[j->verb], j->name, j->path, PATH_MAX - 1);
			job_respond_error(j, err);
			return;
		}
		memcpy(j->target + j->target_len, data, len);
		j->target_len += len;
		break;
	case FILE_DIRECTORY:
		break; /* a directory has no content: whatever came is dropped */
	}
	free(data);
	lxmd_request_body_resume(r);
}

static void push_body_end(struct lxmd_request *r)
{
	struct file_job *j = r->defer_data;
	struct lxm_error *err = NULL;
	int k;

	if (j->type == FILE_SYMLINK) {
		j->target[j->target_len] = '\0';
		if (j->target_len == 0 || strlen(j->target) != j->target_len) {
			lxm_error_set(&err, -EINVAL, 400,
				      "%s '%s': %s: a symlink needs its target as the body (not "
				      "empty, no NUL)",
				      verb_text[j->verb], j->name, j->path);
			job_respond_error(j, err);
			return;
		}
	}
	k = job_queue(j, push_finish_work, job_done_sync);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "%s '%s': %s: queue work: %s", verb_text[j->verb],
			      j->name, j->path, uv_strerror(k));
		job_respond_error(j, err);
	}
}

/* The client went away: a step in flight finishes, then the job cleans up. */
static void job_abort(struct lxmd_request *r)
{
	struct file_job *j = r->defer_data;

	j->r = NULL;
	if (!j->busy)
		job_end(j);
}

/* ---- VMs: the guest's agent does the work ----
 *
 * A pull is a FILE_GET session: the head goes out with what the agent says the path is, then
 * its data as the agent sends it; each piece holds back the agent's credit until the socket took
 * it. A push is a FILE_PUT session opened once the agent answered (a symlink's or directory's
 * once the body is complete): each piece of the body goes to the agent and the next is read
 * once the agent's window took it. The agent writes a file through a temporary one as lxmd does
 * for containers. */

static void vm_job_free(struct file_job *j)
{
	if (j->agent_wait)
		lxmd_vm_agent_wait_cancel(TAKE_PTR(j->agent_wait));
	if (j->as)
		lxm_agent_session_close(TAKE_PTR(j->as));
	free(TAKE_PTR(j->stash));
	job_free(j);
}

static void vm_abort(struct lxmd_request *r)
{
	vm_job_free(r->defer_data);
}

/* Ends the request with the agent's (or the wait's) error, which names the step and the path. */
static void vm_respond_error(struct file_job *j, struct lxm_error *cause)
{
	struct lxmd_request *r = TAKE_PTR(j->r);
	struct lxm_error *err = NULL;

	lxm_error_set(&err, cause->errnum ? -cause->errnum : -EIO,
		      cause->status ? cause->status : 500, "%s '%s': %s: %s", verb_text[j->verb],
		      j->name, j->path, cause->msg);
	if (j->starting) {
		/* Inside vm_job_start(), which answers. */
		j->r = r;
		lxm_error_free(j->start_err);
		j->start_err = err;
		return;
	}
	if (r)
		lxmd_respond_error(r, err);
	else
		lxm_error_free(err);
	vm_job_free(j);
}

static void vm_respond_oom(struct file_job *j)
{
	struct lxm_error *err = NULL;

	lxm_error_set(&err, -ENOMEM, 500, "out of memory");
	vm_respond_error(j, err);
	lxm_error_free(err);
}

/* Starts waiting for the agent; ready runs with it (or with the wait's error). */
static int vm_job_start(struct lxmd_request *r, struct file_job **jp, lxmd_vm_agent_cb ready,
			struct lxm_error **err)
{
	struct file_job *j = *jp;
	struct lxmd_vm_agent_wait *w = NULL;
	int k;

	k = lxmd_vm_agent_check_running(j->d, j->name, err);
	if (k < 0)
		return lxm_error_prefix(err, "%s '%s': %s", verb_text[j->verb], j->name, j->path);
	/* ready may run before lxmd_vm_agent_get() returns: its error is then this call's. */
	j->starting = true;
	k = lxmd_vm_agent_get(j->d, j->name, ready, j, &w, err);
	j->starting = false;
	if (k < 0)
		return lxm_error_prefix(err, "%s '%s': %s", verb_text[j->verb], j->name, j->path);
	if (j->start_err) {
		k = -(j->start_err->errnum ? j->start_err->errnum : EIO);
		if (err && !*err)
			*err = TAKE_PTR(j->start_err);
		return k;
	}
	j->agent_wait = w;
	r->deferred = true;
	r->on_abort = vm_abort;
	r->defer_data = TAKE_PTR(*jp);
	return 0;
}

/* ---- VM pull ---- */

static void vm_pull_written(struct lxmd_request *r)
{
	struct file_job *j = r->defer_data;

	if (j->writes > 0 && --j->writes == 0 && j->as)
		lxm_agent_session_hold(j->as, false);
}

static void vm_pull_file(struct lxm_agent_session *as, const struct lxm_agent_file *fi, void *ud)
{
	struct file_job *j = ud;
	static const char *const names[] = { "file", "directory", "symlink" };
	char type[64], mode[32], uid[32], gid[32];
	const char *extra[] = { type, mode, uid, gid, NULL };

	j->fi_type = fi->type;
	if (fi->type == LXM_AGENT_FILE_SYMLINK && !(j->link = strdup(fi->target)))
		return;
	j->link_len = j->link ? strlen(j->link) : 0;
	snprintf(type, sizeof(type), "X-LXD-type: %s", names[fi->type < 3 ? fi->type : 0]);
	snprintf(mode, sizeof(mode), "X-LXD-mode: %04o", fi->mode & 07777);
	snprintf(uid, sizeof(uid), "X-LXD-uid: %u", fi->uid);
	snprintf(gid, sizeof(gid), "X-LXD-gid: %u", fi->gid);
	j->extra = malloc(sizeof(type) + sizeof(mode) + sizeof(uid) + sizeof(gid));
	if (!j->extra)
		return;
	snprintf(j->extra, sizeof(type) + sizeof(mode) + sizeof(uid) + sizeof(gid),
		 "%s\n%s\n%s\n%s", extra[0], extra[1], extra[2], extra[3]);
	/* A file's content streams: its head goes out now. */
	if (fi->type == LXM_AGENT_FILE_REGULAR && j->r) {
		if (lxmd_respond_raw_head(j->r, 200, "application/octet-stream", (int64_t)fi->size,
					  extra) == 0)
			j->head_sent = true;
	}
}

static void vm_pull_output(struct lxm_agent_session *as, int stream, const void *buf, size_t len,
			   void *ud)
{
	struct file_job *j = ud;

	if (j->fi_type == LXM_AGENT_FILE_DIRECTORY) {
		if (j->len + len > j->cap) {
			size_t cap = j->cap ? j->cap : 4096;
			char *nb;

			while (cap < j->len + len)
				cap *= 2;
			nb = realloc(j->data, cap);
			if (!nb)
				return;
			j->data = nb;
			j->cap = cap;
		}
		memcpy(j->data + j->len, buf, len);
		j->len += len;
		return;
	}
	if (!j->head_sent || !j->r)
		return;
	if (lxmd_respond_raw_write(j->r, buf, len, vm_pull_written) < 0)
		return;
	/* The agent sends more once the socket took this. */
	j->writes++;
	lxm_agent_session_hold(as, true);
}

/* Splits the headers vm_pull_file() kept into an array. */
static void vm_extra(struct file_job *j, const char *extra[5])
{
	char *save = NULL, *line = j->extra ? strtok_r(j->extra, "\n", &save) : NULL;
	size_t n = 0;

	while (line && n < 4) {
		extra[n++] = line;
		line = strtok_r(NULL, "\n", &save);
	}
	extra[n] = NULL;
}

static void vm_pull_done(struct lxm_agent_session *as, const struct lxm_agent_exit *exit,
			 struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;
	struct lxmd_request *r;
	const char *extra[5];
	json_t *names;

	j->as = NULL;
	if (j->head_sent) {
		/* Cut short if the agent failed in the middle: the client sees the truncation. */
		if (err)
			log_warn("%s '%s': %s: %s", verb_text[j->verb], j->name, j->path, err->msg);
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		vm_job_free(j);
		return;
	}
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	if (!j->extra || (j->fi_type == LXM_AGENT_FILE_SYMLINK && !j->link)) {
		vm_respond_oom(j);
		return;
	}
	vm_extra(j, extra);
	r = TAKE_PTR(j->r);
	if (j->fi_type == LXM_AGENT_FILE_DIRECTORY) {
		names = json_array();
		for (size_t off = 0; names && off < j->len;) {
			const char *name = j->data + off;
			size_t n = strnlen(name, j->len - off);
			json_t *v;

			if (off + n == j->len)
				break; /* no NUL: not a whole name */
			v = json_stringn(name, n);
			/* JSON strings are UTF-8: a name that is not gets '?' for its odd bytes. */
			if (!v) {
				for (size_t i = 0; i < n; i++)
					if ((unsigned char)j->data[off + i] >= 0x80)
						j->data[off + i] = '?';
				v = json_stringn(name, n);
			}
			json_array_append_new(names, v);
			off += n + 1;
		}
		lxmd_respond_json(r, 200, lxm_json_sync(names ? names : json_array()), extra);
	} else {
		/* A symlink: its target is the body. */
		if (lxmd_respond_raw_head(r, 200, "application/octet-stream", (int64_t)j->link_len,
					  extra) == 0)
			(void)lxmd_respond_raw_write(r, j->link, j->link_len, NULL);
		lxmd_respond_raw_end(r);
	}
	vm_job_free(j);
}

static void vm_pull_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;
	struct lxm_agent_cbs cbs = {
		.file = vm_pull_file, .output = vm_pull_output, .done = vm_pull_done, .ud = j
	};
	struct lxm_error *e = NULL;

	j->agent_wait = NULL;
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	if (lxm_agent_file_get(a, j->path, &cbs, &j->as, &e) < 0) {
		vm_respond_error(j, e);
		lxm_error_free(e);
	}
}

/* ---- VM push ---- */

/* Sends the piece that came before the session, and lets the body go on. */
static void vm_push_flush(struct file_job *j)
{
	struct lxm_error *err = NULL;

	if (j->stash) {
		int k = lxm_agent_put_write(j->as, j->stash, j->stash_len);

		free(TAKE_PTR(j->stash));
		if (k < 0) {
			lxm_error_set(&err, k, 500, "send data to the VM agent: %s", strerror(-k));
			vm_respond_error(j, err);
			lxm_error_free(err);
			return;
		}
		if (lxm_agent_session_pending(j->as) == 0 && j->r)
			lxmd_request_body_resume(j->r);
	}
	if (j->body_done)
		(void)lxm_agent_put_end(j->as);
}

static void vm_push_drained(struct lxm_agent_session *as, void *ud)
{
	struct file_job *j = ud;

	if (j->r && !j->body_done)
		lxmd_request_body_resume(j->r);
}

static void vm_push_done(struct lxm_agent_session *as, const struct lxm_agent_exit *exit,
			 struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;
	struct lxmd_request *r;

	j->as = NULL;
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	r = TAKE_PTR(j->r);
	if (r)
		lxmd_respond_sync(r, json_object(), NULL);
	vm_job_free(j);
}

/* Opens the FILE_PUT session once the agent answered and (but for a file) the body is in. */
static void vm_push_open(struct file_job *j)
{
	static const uint32_t types[] = { [FILE_REGULAR] = LXM_AGENT_FILE_REGULAR,
					  [FILE_DIRECTORY] = LXM_AGENT_FILE_DIRECTORY,
					  [FILE_SYMLINK] = LXM_AGENT_FILE_SYMLINK };
	struct lxm_agent_cbs cbs = { .drained = vm_push_drained, .done = vm_push_done, .ud = j };
	struct lxm_agent_file fi = {
		.type = types[j->type],
		.mode = j->mode,
		.uid = j->uid,
		.gid = j->gid,
		.flags = (j->has_mode ? LXM_AGENT_PUT_MODE : 0) |
			 (j->has_uid ? LXM_AGENT_PUT_UID : 0) |
			 (j->has_gid ? LXM_AGENT_PUT_GID : 0) |
			 (j->append ? LXM_AGENT_PUT_APPEND : 0),
		.path = j->path,
		.target = j->type == FILE_SYMLINK ? j->target : "",
	};
	struct lxm_error *e = NULL;

	if (j->as || !j->agent || (j->type != FILE_REGULAR && !j->body_done))
		return;
	if (lxm_agent_file_put(j->agent, &fi, &cbs, &j->as, &e) < 0) {
		vm_respond_error(j, e);
		lxm_error_free(e);
		return;
	}
	if (j->type == FILE_REGULAR)
		vm_push_flush(j);
}

static void vm_push_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;

	j->agent_wait = NULL;
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	j->agent = a;
	vm_push_open(j);
}

static void vm_push_body(struct lxmd_request *r, char *data, size_t len)
{
	struct file_job *j = r->defer_data;
	struct lxm_error *err = NULL;
	int k;

	if (j->type != FILE_REGULAR) {
		push_body(r, data, len); /* collects a symlink's target */
		return;
	}
	if (!j->as) {
		/* Before the agent answered: kept, and the body waits. */
		j->stash = data;
		j->stash_len = len;
		return;
	}
	k = lxm_agent_put_write(j->as, data, len);
	free(data);
	if (k < 0) {
		lxm_error_set(&err, k, 500, "send data to the VM agent: %s", strerror(-k));
		vm_respond_error(j, err);
		lxm_error_free(err);
		return;
	}
	if (lxm_agent_session_pending(j->as) == 0)
		lxmd_request_body_resume(r);
}

static void vm_push_body_end(struct lxmd_request *r)
{
	struct file_job *j = r->defer_data;
	struct lxm_error *err = NULL;

	if (j->type == FILE_SYMLINK) {
		j->target[j->target_len] = '\0';
		if (j->target_len == 0 || strlen(j->target) != j->target_len) {
			lxm_error_set(&err, -EINVAL, 400,
				      "a symlink needs its target as the body (not empty, no NUL)");
			vm_respond_error(j, err);
			lxm_error_free(err);
			return;
		}
	}
	j->body_done = true;
	if (j->as)
		(void)lxm_agent_put_end(j->as);
	else
		vm_push_open(j);
}

/* ---- VM delete ----
 *
 * The agent protocol has no removal: the guest's shell removes the entry (rmdir for a
 * directory, so that only an empty one goes, as for containers; rm otherwise, never following a
 * symlink), and what it wrote on stderr is the error. */

/* Exit status of the script when the path does not exist. */
#define VM_DELETE_MISSING 44

static const char vm_delete_script[] =
	"[ -e \"$1\" ] || [ -L \"$1\" ] || exit 44; "
	"if [ -d \"$1\" ] && [ ! -L \"$1\" ]; then exec rmdir -- \"$1\"; fi; exec rm -f -- \"$1\"";

static void vm_delete_output(struct lxm_agent_session *as, int stream, const void *buf, size_t len,
			     void *ud)
{
	struct file_job *j = ud;
	size_t room = 1024 - j->len;

	if (stream != 2 || !j->data)
		return;
	if (len > room)
		len = room;
	memcpy(j->data + j->len, buf, len);
	j->len += len;
}

static void vm_delete_done(struct lxm_agent_session *as, const struct lxm_agent_exit *exit,
			   struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;
	struct lxmd_request *r;
	struct lxm_error *e = NULL;

	j->as = NULL;
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	if (exit->signaled || exit->value != 0) {
		while (j->len > 0 && (j->data[j->len - 1] == '\n' || j->data[j->len - 1] == '\r'))
			j->len--;
		if (!exit->signaled && exit->value == VM_DELETE_MISSING)
			lxm_error_set(&e, -ENOENT, 404, "remove: No such file or directory");
		else if (!exit->signaled && exit->value == 127)
			lxm_error_set(&e, -ENOEXEC, 500,
				      "remove: the guest has no sh, rm or rmdir");
		else
			lxm_error_set(&e, -EIO, 400, "remove: %.*s", (int)j->len,
				      j->len ? j->data : "failed");
		vm_respond_error(j, e);
		lxm_error_free(e);
		return;
	}
	r = TAKE_PTR(j->r);
	if (r)
		lxmd_respond_sync(r, json_object(), NULL);
	vm_job_free(j);
}

static void vm_delete_ready(struct lxm_agent *a, struct lxm_error *err, void *ud)
{
	struct file_job *j = ud;
	char *argv[] = { "sh", "-c", (char *)vm_delete_script, "lxm-delete", j->path, NULL };
	char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=C.UTF-8", NULL };
	struct lxm_agent_exec_req req = {
		.flags = LXM_AGENT_EXEC_STDERR, .cwd = "", .argv = argv, .env = env
	};
	struct lxm_agent_cbs cbs = { .output = vm_delete_output, .done = vm_delete_done, .ud = j };
	struct lxm_error *e = NULL;

	j->agent_wait = NULL;
	if (err) {
		vm_respond_error(j, err);
		return;
	}
	j->data = malloc(1024);
	if (!j->data) {
		vm_respond_oom(j);
		return;
	}
	j->len = 0;
	if (lxm_agent_exec(a, &req, &cbs, &j->as, &e) < 0) {
		vm_respond_error(j, e);
		lxm_error_free(e);
	}
}

/* ---- requests ---- */

static const char *type_name(mode_t mode)
{
	if (S_ISDIR(mode))
		return "directory";
	if (S_ISLNK(mode))
		return "symlink";
	return "file";
}

/* "/a/b/" -> "/a" and "b". The root itself, "." and ".." name no entry that can be made or
 * removed. */
static int split_path(struct file_job *j, struct lxm_error **err)
{
	_cleanup_free_ char *p = strdup(j->path);
	char *slash;
	size_t len;

	if (!p)
		return -ENOMEM;
	len = strlen(p);
	while (len > 1 && p[len - 1] == '/')
		p[--len] = '\0';
	slash = strrchr(p, '/');
	if (!slash[1] || streq(slash + 1, ".") || streq(slash + 1, ".."))
		return lxm_error_set(err, -EINVAL, 400, "%s '%s': %s: not a file name",
				     verb_text[j->verb], j->name, j->path);
	j->leaf = strdup(slash + 1);
	j->parent = slash == p ? strdup("/") : strndup(p, (size_t)(slash - p));
	return j->leaf && j->parent ? 0 : -ENOMEM;
}

/* The instance, its rootfs and ?path= (relative paths are relative to /, as lxc sends them). */
static int job_new(struct lxmd_request *r, enum file_verb verb, struct file_job **ret,
		   struct lxm_error **err)
{
	_cleanup_(job_freep) struct file_job *j = NULL;
	_cleanup_db_instance_ struct lxm_db_instance *inst = NULL;
	_cleanup_free_ char *dir = NULL, *path = NULL;
	int k;

	if ((k = lxmd_query_project(r, err)) < 0)
		return k;
	if ((k = lxm_db_instance_get(r->d->db, r->args[0], &inst, err)) < 0)
		return lxm_error_prefix(err, "%s '%s'", verb_text[verb], r->args[0]);
	k = lxm_http_query_get(r->http->query, "path", &path);
	if (k == -ENOMEM)
		return k;
	if (k < 0 || !*path)
		return lxm_error_set(err, -EINVAL, 400, "%s '%s': missing ?path=", verb_text[verb],
				     inst->name);
	if (strlen(path) >= PATH_MAX)
		return lxm_error_set(err, -ENAMETOOLONG, 400, "%s '%s': path is too long",
				     verb_text[verb], inst->name);

	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fd = j->dir_fd = -1;
	j->d = r->d;
	j->r = r;
	j->verb = verb;
	j->name = strdup(inst->name);
	j->vm = streq(inst->type, "virtual-machine");
	if (path[0] == '/')
		j->path = TAKE_PTR(path);
	else if (asprintf(&j->path, "/%s", path) < 0)
		j->path = NULL;
	if ((k = lxmd_instance_path(r->d, inst->name, &dir)) < 0)
		return k;
	if (asprintf(&j->rootfs, "%s/rootfs", dir) < 0)
		j->rootfs = NULL;
	if (!j->name || !j->path || !j->rootfs)
		return -ENOMEM;
	*ret = TAKE_PTR(j);
	return 0;
}

/* An id header: a number, or -1 (what lxc sends for "not given"). */
static int parse_id_header(struct lxmd_request *r, struct file_job *j, const char *name,
			   unsigned *ret, bool *ret_has, struct lxm_error **err)
{
	const char *v = lxm_http_request_header(r->http, name);
	char *end;
	long long n;

	*ret_has = false;
	if (!v || !*v)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || *end || n < -1 || n >= (long long)UINT32_MAX)
		return lxm_error_set(err, -EINVAL, 400, "%s '%s': %s: invalid %s '%s'",
				     verb_text[j->verb], j->name, j->path, name, v);
	if (n >= 0) {
		*ret = (unsigned)n;
		*ret_has = true;
	}
	return 0;
}

static int parse_push_headers(struct lxmd_request *r, struct file_job *j, struct lxm_error **err)
{
	const char *type = lxm_http_request_header(r->http, "X-LXD-type");
	const char *mode = lxm_http_request_header(r->http, "X-LXD-mode");
	const char *how = lxm_http_request_header(r->http, "X-LXD-write");
	unsigned uid = 0, gid = 0;
	int k;

	if (!type || !*type || streq(type, "file"))
		j->type = FILE_REGULAR;
	else if (streq(type, "directory"))
		j->type = FILE_DIRECTORY;
	else if (streq(type, "symlink"))
		j->type = FILE_SYMLINK;
	else
		return lxm_error_set(err, -EINVAL, 400,
				     "%s '%s': %s: unknown X-LXD-type '%s' (file, directory or "
				     "symlink)",
				     verb_text[j->verb], j->name, j->path, type);
	if (how && *how && !streq(how, "overwrite") && !streq(how, "append"))
		return lxm_error_set(err, -EINVAL, 400,
				     "%s '%s': %s: unknown X-LXD-write '%s' (overwrite or append)",
				     verb_text[j->verb], j->name, j->path, how);
	j->append = streq(how, "append");
	if (j->append && j->type != FILE_REGULAR)
		return lxm_error_set(err, -EINVAL, 400,
				     "%s '%s': %s: X-LXD-write: append is for files only",
				     verb_text[j->verb], j->name, j->path);

	j->mode = j->type == FILE_DIRECTORY ? 0755 : 0644;
	if (mode && *mode) {
		const char *digits = startswith(mode, "0o") ? mode + 2 : mode;
		char *end;
		unsigned long m;

		errno = 0;
		m = strtoul(digits, &end, 8);
		if (errno || !*digits || *end || m > 07777 || digits[0] == '-')
			return lxm_error_set(err, -EINVAL, 400,
					     "%s '%s': %s: invalid X-LXD-mode '%s' (octal, e.g. "
					     "0644)",
					     verb_text[j->verb], j->name, j->path, mode);
		j->mode = (mode_t)m;
		j->has_mode = true;
	}
	if ((k = parse_id_header(r, j, "X-LXD-uid", &uid, &j->has_uid, err)) < 0 ||
	    (k = parse_id_header(r, j, "X-LXD-gid", &gid, &j->has_gid, err)) < 0)
		return k;
	j->uid = uid;
	j->gid = gid;
	if (j->type == FILE_SYMLINK) {
		j->target = malloc(PATH_MAX);
		if (!j->target)
			return -ENOMEM;
	}
	return split_path(j, err);
}

int lxmd_api_instance_files_post(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(job_freep) struct file_job *j = NULL;
	int k;

	if ((k = job_new(r, VERB_PUSH, &j, err)) < 0 || (k = parse_push_headers(r, j, err)) < 0)
		return k;
	if (j->vm) {
		r->on_body = vm_push_body;
		r->on_body_end = vm_push_body_end;
		return vm_job_start(r, &j, vm_push_ready, err);
	}
	/* Nothing touches the disk yet: the first piece (or the end of the body) opens it. */
	r->deferred = true;
	r->on_abort = job_abort;
	r->on_body = push_body;
	r->on_body_end = push_body_end;
	r->defer_data = TAKE_PTR(j);
	return 0;
}

/* ---- pull ---- */

static int list_directory(struct file_job *j, int dfd)
{
	_cleanup_json_ json_t *names = json_array();
	DIR *dir;
	struct dirent *de;
	int k = 0;

	j->step = "read directory";
	if (!names)
		return -ENOMEM;
	dir = fdopendir(dfd);
	if (!dir) {
		k = -errno;
		close(dfd);
		return k;
	}
	for (;;) {
		json_t *name;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			k = -errno;
			break;
		}
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		name = json_string(de->d_name);
		/* JSON strings are UTF-8: a name that is not gets '?' for its odd bytes. */
		if (!name) {
			for (char *c = de->d_name; *c; c++)
				if ((unsigned char)*c >= 0x80)
					*c = '?';
			name = json_string(de->d_name);
		}
		if (json_array_append_new(names, name) < 0) {
			k = -ENOMEM;
			break;
		}
	}
	closedir(dir);
	if (k == 0)
		j->entries = TAKE_PTR(names);
	return k;
}

/* Opens path again for reading and checks that it is still what was looked at. */
static int reopen_same(struct file_job *j, int root, int flags)
{
	struct stat st;
	int fd = open_in_root(root, j->path, flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || st.st_dev != j->st.st_dev || st.st_ino != j->st.st_ino) {
		close(fd);
		return job_fail(j, -EAGAIN, "changed while being opened: try again");
	}
	return fd;
}

static int pull_open(struct file_job *j)
{
	_cleanup_close_ int root = -1, fd = -1;
	ssize_t n;
	int k;

	root = open_rootfs(j);
	if (root < 0)
		return root;
	/* O_PATH|O_NOFOLLOW: the entry itself, so that a symlink is reported, not followed. */
	j->step = "open";
	fd = open_in_root(root, j->path, O_PATH | O_NOFOLLOW, 0);
	if (fd < 0)
		return fd;
	j->step = "stat";
	if (fstat(fd, &j->st) < 0)
		return -errno;
	if (S_ISLNK(j->st.st_mode)) {
		j->step = "read symlink";
		j->link = malloc(PATH_MAX);
		if (!j->link)
			return -ENOMEM;
		n = readlinkat(fd, "", j->link, PATH_MAX);
		if (n < 0)
			return -errno;
		j->link_len = (size_t)n;
		return 0;
	}
	if (S_ISDIR(j->st.st_mode)) {
		j->step = "open directory";
		k = reopen_same(j, root, O_RDONLY | O_DIRECTORY);
		return k < 0 ? k : list_directory(j, k);
	}
	if (!S_ISREG(j->st.st_mode))
		return job_fail(j, -EINVAL, "not a regular file, directory or symlink");
	j->step = "open";
	k = reopen_same(j, root, O_RDONLY);
	if (k < 0)
		return k;
	j->fd = k;
	j->left = (uint64_t)j->st.st_size;
	return 0;
}

static void pull_open_work(uv_work_t *w)
{
	struct file_job *j = w->data;

	j->result = pull_open(j);
}

static void pull_read_work(uv_work_t *w)
{
	struct file_job *j = w->data;
	size_t want = j->left < PULL_CHUNK ? (size_t)j->left : PULL_CHUNK;

	j->step = "read";
	do
		j->got = read(j->fd, j->data, want);
	while (j->got < 0 && errno == EINTR);
	j->result = j->got < 0 ? -errno : 0;
}

static void pull_read_done(uv_work_t *w, int status);

static void pull_next(struct file_job *j)
{
	int k;

	if (j->left == 0) {
		struct lxmd_request *r = TAKE_PTR(j->r);

		lxmd_respond_raw_end(r);
		job_end(j);
		return;
	}
	k = job_queue(j, pull_read_work, pull_read_done);
	if (k < 0) {
		log_warn("%s '%s': %s: cannot queue read: %s", verb_text[j->verb], j->name, j->path,
			 uv_strerror(k));
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		job_end(j);
	}
}

static void pull_written(struct lxmd_request *r)
{
	pull_next(r->defer_data);
}

static void pull_read_done(uv_work_t *w, int status)
{
	struct file_job *j = w->data;

	j->busy = false;
	if (!j->r) {
		job_end(j);
		return;
	}
	/* The head is out: a failure (or a file that shrank) can only cut the body short, which
	 * closes the connection so the client sees it. */
	if (j->result < 0 || j->got == 0) {
		if (j->result < 0)
			log_warn("%s '%s': %s: read: %s", verb_text[j->verb], j->name, j->path,
				 strerror(-j->result));
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		job_end(j);
		return;
	}
	j->left -= (uint64_t)j->got;
	if (lxmd_respond_raw_write(j->r, j->data, (size_t)j->got, pull_written) < 0) {
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		job_end(j);
	}
}

static void pull_open_done(uv_work_t *w, int status)
{
	struct file_job *j = w->data;
	char type[64], mode[32], uid[32], gid[32];
	const char *extra[] = { type, mode, uid, gid, NULL };
	struct lxmd_request *r = j->r;
	int k;

	j->busy = false;
	if (!r) {
		job_end(j);
		return;
	}
	if (j->result < 0) {
		job_respond_error(j, job_error(j));
		return;
	}
	snprintf(type, sizeof(type), "X-LXD-type: %s", type_name(j->st.st_mode));
	snprintf(mode, sizeof(mode), "X-LXD-mode: %04o", (unsigned)(j->st.st_mode & 07777));
	snprintf(uid, sizeof(uid), "X-LXD-uid: %u", (unsigned)j->st.st_uid);
	snprintf(gid, sizeof(gid), "X-LXD-gid: %u", (unsigned)j->st.st_gid);

	if (S_ISDIR(j->st.st_mode)) {
		j->r = NULL;
		lxmd_respond_json(r, 200, lxm_json_sync(TAKE_PTR(j->entries)), extra);
		job_end(j);
		return;
	}
	if (S_ISLNK(j->st.st_mode)) {
		k = lxmd_respond_raw_head(r, 200, "application/octet-stream", (int64_t)j->link_len,
					  extra);
		if (k >= 0)
			k = lxmd_respond_raw_write(r, j->link, j->link_len, NULL);
		j->r = NULL;
		lxmd_respond_raw_end(r);
		job_end(j);
		return;
	}
	j->data = malloc(PULL_CHUNK);
	if (!j->data) {
		struct lxm_error *err = NULL;

		lxm_error_set(&err, -ENOMEM, 500, "%s '%s': %s: out of memory", verb_text[j->verb],
			      j->name, j->path);
		job_respond_error(j, err);
		return;
	}
	k = lxmd_respond_raw_head(r, 200, "application/octet-stream", (int64_t)j->left, extra);
	if (k < 0) {
		lxmd_respond_raw_end(TAKE_PTR(j->r));
		job_end(j);
		return;
	}
	pull_next(j);
}

/* Queues the job's first step and defers r's answer to it; the request then owns *j. */
static int job_start(struct lxmd_request *r, struct file_job **j, uv_work_cb work,
		     uv_after_work_cb after, struct lxm_error **err)
{
	int k;

	k = job_queue(*j, work, after);
	if (k < 0)
		return lxm_error_set(err, k, 500, "%s '%s': %s: queue work: %s",
				     verb_text[(*j)->verb], (*j)->name, (*j)->path, uv_strerror(k));
	r->deferred = true;
	r->on_abort = job_abort;
	r->defer_data = TAKE_PTR(*j);
	return 0;
}

int lxmd_api_instance_files_get(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(job_freep) struct file_job *j = NULL;
	int k;

	if ((k = job_new(r, VERB_PULL, &j, err)) < 0)
		return k;
	if (j->vm)
		return vm_job_start(r, &j, vm_pull_ready, err);
	return job_start(r, &j, pull_open_work, pull_open_done, err);
}

/* ---- delete ---- */

static void delete_work(uv_work_t *w)
{
	struct file_job *j = w->data;
	_cleanup_close_ int root = -1, dir = -1;

	root = open_rootfs(j);
	if (root < 0) {
		j->result = root;
		return;
	}
	j->step = "open parent directory";
	dir = open_in_root(root, j->parent, O_PATH | O_DIRECTORY, 0);
	if (dir < 0) {
		j->result = dir;
		return;
	}
	/* An empty directory goes too, as in LXD; a symlink is removed, never followed. */
	j->step = "remove";
	j->result = 0;
	if (unlinkat(dir, j->leaf, 0) == 0)
		return;
	if (errno == EISDIR && unlinkat(dir, j->leaf, AT_REMOVEDIR) == 0)
		return;
	j->result = -errno;
	if (j->result == -ENOTEMPTY || j->result == -EEXIST)
		job_fail(j, -ENOTEMPTY, "directory not empty");
}

int lxmd_api_instance_files_delete(struct lxmd_request *r, struct lxm_error **err)
{
	_cleanup_(job_freep) struct file_job *j = NULL;
	int k;

	if ((k = job_new(r, VERB_DELETE, &j, err)) < 0 || (k = split_path(j, err)) < 0)
		return k;
	if (j->vm)
		return vm_job_start(r, &j, vm_delete_ready, err);
	return job_start(r, &j, delete_work, job_done_sync, err);
}
