#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

static int error_vset(struct lxm_error **err, int errnum, int status, int with_cause,
		      const char *fmt, va_list ap)
{
	char *msg = NULL;
	struct lxm_error *e;
	int r;

	if (errnum > 0)
		errnum = -errnum;
	if (!err || *err)
		return errnum ? errnum : -EIO;

	r = vasprintf(&msg, fmt, ap);
	if (r < 0)
		return errnum ? errnum : -ENOMEM;
	if (with_cause && errnum) {
		char *full = NULL;

		r = asprintf(&full, "%s: %s", msg, strerror(-errnum));
		free(msg);
		if (r < 0)
			return errnum;
		msg = full;
	}

	e = calloc(1, sizeof(*e));
	if (!e) {
		free(msg);
		return errnum ? errnum : -ENOMEM;
	}
	e->errnum = -errnum;
	e->status = status ? status : 500;
	e->msg = msg;
	*err = e;
	return errnum ? errnum : -EIO;
}

int lxm_error_set(struct lxm_error **err, int errnum, int status, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = error_vset(err, errnum, status, 0, fmt, ap);
	va_end(ap);
	return r;
}

int lxm_error_setx(struct lxm_error **err, int errnum, int status, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = error_vset(err, errnum, status, 1, fmt, ap);
	va_end(ap);
	return r;
}

int lxm_error_prefix(struct lxm_error **err, const char *fmt, ...)
{
	char *ctx = NULL, *full = NULL;
	va_list ap;
	int r;

	if (!err || !*err)
		return -EIO;
	va_start(ap, fmt);
	r = vasprintf(&ctx, fmt, ap);
	va_end(ap);
	/* Context the message already starts with (a server's own, repeated by its client) is not
	 * added twice. */
	if (r >= 0 && startswith((*err)->msg, ctx) && startswith((*err)->msg + strlen(ctx), ": ")) {
		free(ctx);
		return (*err)->errnum ? -(*err)->errnum : -EIO;
	}
	if (r >= 0 && asprintf(&full, "%s: %s", ctx, (*err)->msg) >= 0) {
		free((*err)->msg);
		(*err)->msg = full;
	}
	free(ctx);
	return (*err)->errnum ? -(*err)->errnum : -EIO;
}

void lxm_error_free(struct lxm_error *e)
{
	if (!e)
		return;
	free(e->msg);
	free(e);
}
