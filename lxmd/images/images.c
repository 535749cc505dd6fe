/* Images as lxmd uses them to fill an instance's rootfs. For now a directory per alias under
 * ROOT/images, built by its template on first use; the image store replaces this. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "daemon.h"
#include "images/images.h"
#include "instance.h"
#include "log.h"
#include "util.h"

struct fill_job {
	TAILQ_ENTRY(fill_job) link; /* in the build's waiters */
	struct lxmd *d;		    /* the daemon */
	char *name;		    /* the instance being filled */
	char *alias;		    /* its image */
	lxmd_rootfs_done_fn cb;	    /* told the result */
	void *ud;		    /* for cb */
};

/* One template build in progress, which every launch of the alias waits for. */
struct image_build {
	TAILQ_ENTRY(image_build) link;	/* in builds */
	struct lxmd *d;			/* the daemon */
	char *alias;			/* what is being built */
	char *tmpdir;			/* where */
	TAILQ_HEAD(, fill_job) waiters; /* launches waiting for it */
};

static TAILQ_HEAD(, image_build) builds = TAILQ_HEAD_INITIALIZER(builds);

static void fill_job_free(struct fill_job *j)
{
	free(j->name);
	free(j->alias);
	free(j);
}

static int image_dir(struct lxmd *d, const char *alias, char **ret)
{
	return asprintf(ret, "%s/images/%s", d->cfg.root, alias) < 0 ? -ENOMEM : 0;
}

/* The template that builds alias: $LXM_TEMPLATES_DIR, the source tree beside a build, or the
 * installed data directory. */
static int template_for(const char *alias, char **ret)
{
	const char *env = getenv("LXM_TEMPLATES_DIR");
	_cleanup_free_ char *self = NULL;
	char *path = NULL;

	if (env && *env && asprintf(&path, "%s/%s/build", env, alias) >= 0 &&
	    access(path, X_OK) == 0)
		goto found;
	free(TAKE_PTR(path));
	if (lxmd_self_dir(&self) == 0 &&
	    asprintf(&path, "%s/../../templates/%s/build", self, alias) >= 0 &&
	    access(path, X_OK) == 0)
		goto found;
	free(TAKE_PTR(path));
	if (asprintf(&path, "%s/templates/%s/build", LXM_DATADIR, alias) >= 0 &&
	    access(path, X_OK) == 0)
		goto found;
	free(path);
	return -ENOENT;
found:
	*ret = path;
	return 0;
}

bool lxmd_image_known(struct lxmd *d, const char *alias)
{
	_cleanup_free_ char *dir = NULL, *tpl = NULL;

	if (strchr(alias, '/') || streq(alias, ".") || streq(alias, ".."))
		return false;
	if (image_dir(d, alias, &dir) == 0 && access(dir, F_OK) == 0)
		return true;
	return template_for(alias, &tpl) == 0;
}

static void copy_done(int status, const char *out, const char *errout, void *ud)
{
	struct fill_job *j = ud;

	if (status != 0)
		log_error("instance '%s': copy of image '%s' failed (%d): %s", j->name, j->alias,
			  status, errout);
	j->cb(j->d, j->name, status == 0 ? 0 : -EIO, j->ud);
	fill_job_free(j);
}

static void start_copy(struct fill_job *j)
{
	_cleanup_free_ char *src = NULL, *dst = NULL, *path = NULL;
	char *argv[6];
	int k;

	if (image_dir(j->d, j->alias, &src) < 0 || lxmd_instance_path(j->d, j->name, &path) < 0 ||
	    asprintf(&dst, "%s/rootfs", path) < 0)
		k = -ENOMEM;
	else if ((k = lxm_mkdir_p(path, 0711)) == 0) {
		char *from = NULL;

		/* "rootfs/." copies the tree's content into the existing directory. */
		if (asprintf(&from, "%s/rootfs/.", src) < 0) {
			k = -ENOMEM;
		} else {
			argv[0] = (char *)"/bin/cp";
			argv[1] = (char *)"-a";
			argv[2] = (char *)"--reflink=auto";
			argv[3] = from;
			argv[4] = dst;
			argv[5] = NULL;
			mkdir(dst, 0755);
			k = lxmd_child_run(j->d->loop, argv, copy_done, j);
			free(from);
			if (k == 0)
				return;
		}
	}
	j->cb(j->d, j->name, k, j->ud);
	fill_job_free(j);
}

static void build_done(int status, const char *out, const char *errout, void *ud)
{
	struct image_build *b = ud;
	struct fill_job *j;
	struct lxmd *d = b->d;
	_cleanup_free_ char *dir = NULL;
	int result = status == 0 ? 0 : -EIO;

	if (result == 0 && image_dir(d, b->alias, &dir) == 0 && rename(b->tmpdir, dir) < 0)
		result = -errno;
	if (result < 0) {
		log_error("image '%s': template build failed (%d): %s", b->alias, status, errout);
		/* Leave nothing half-built behind. */
		char *argv[] = { (char *)"/bin/rm", (char *)"-rf", b->tmpdir, NULL };

		if (lxmd_child_run(d->loop, argv, NULL, NULL) < 0)
			log_warn("image '%s': could not remove %s", b->alias, b->tmpdir);
	} else {
		log_info("image '%s' built", b->alias);
	}
	TAILQ_REMOVE(&builds, b, link);
	while ((j = TAILQ_FIRST(&b->waiters))) {
		TAILQ_REMOVE(&b->waiters, j, link);
		if (result < 0) {
			j->cb(j->d, j->name, result, j->ud);
			fill_job_free(j);
		} else {
			start_copy(j);
		}
	}
	free(b->alias);
	free(b->tmpdir);
	free(b);
}

int lxmd_instance_fill_rootfs(struct lxmd *d, const char *name, const char *alias,
			      lxmd_rootfs_done_fn cb, void *ud, struct lxm_error **err)
{
	_cleanup_free_ char *dir = NULL, *tpl = NULL, *images = NULL;
	struct fill_job *j = calloc(1, sizeof(*j));
	struct image_build *b;
	char *argv[3];
	int k;

	if (!j || !(j->name = strdup(name)) || !(j->alias = strdup(alias))) {
		if (j)
			fill_job_free(j);
		return -ENOMEM;
	}
	j->d = d;
	j->cb = cb;
	j->ud = ud;
	if (image_dir(d, alias, &dir) < 0)
		goto oom;
	if (access(dir, F_OK) == 0) {
		start_copy(j);
		return 0;
	}
	TAILQ_FOREACH(b, &builds, link)
	{
		if (streq(b->alias, alias)) {
			TAILQ_INSERT_TAIL(&b->waiters, j, link);
			return 0;
		}
	}
	if (template_for(alias, &tpl) < 0) {
		fill_job_free(j);
		return lxm_error_set(err, -ENOENT, 404, "image '%s' not found", alias);
	}
	b = calloc(1, sizeof(*b));
	if (!b || asprintf(&images, "%s/images", d->cfg.root) < 0 ||
	    asprintf(&b->tmpdir, "%s/.build-%s-%d", images, alias, (int)getpid()) < 0 ||
	    !(b->alias = strdup(alias))) {
		free(b);
		goto oom;
	}
	lxm_mkdir_p(images, 0700);
	b->d = d;
	TAILQ_INIT(&b->waiters);
	TAILQ_INSERT_TAIL(&b->waiters, j, link);
	TAILQ_INSERT_TAIL(&builds, b, link);
	argv[0] = tpl;
	argv[1] = b->tmpdir;
	argv[2] = NULL;
	log_info("image '%s': building it with %s", alias, tpl);
	k = lxmd_child_run(d->loop, argv, build_done, b);
	if (k < 0) {
		TAILQ_REMOVE(&builds, b, link);
		free(b->alias);
		free(b->tmpdir);
		free(b);
		fill_job_free(j);
		return lxm_error_set(err, k, 500, "image '%s': run %s: %s", alias, tpl,
				     uv_strerror(k));
	}
	return 0;
oom:
	fill_job_free(j);
	return -ENOMEM;
}
