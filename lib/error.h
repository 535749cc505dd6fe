/* Errors on request paths: an errno plus a human message that callers extend with context on the
 * way up, e.g. "start 'web1': mount rootfs: /var/lib/...: No such file or directory". */
#pragma once

#include <stdarg.h>

struct lxm_error {
	int errnum; /* positive errno of the root cause, 0 when there is none */
	int status; /* HTTP status the API answers with (400, 404, 409, 500, ...) */
	char *msg;  /* full message, context first */
};

/* Sets *err (when err is non-NULL and *err is NULL) and returns -errnum, so a failing function can
 * end with `return lxm_error_set(err, -ENOENT, 404, "instance '%s' not found", name);`.
 * errnum is a negative errno; when non-zero, ": strerror" is NOT appended: callers say the cause.
 */
int lxm_error_set(struct lxm_error **err, int errnum, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Like lxm_error_set() and appends ": <strerror(-errnum)>" to the message. */
int lxm_error_setx(struct lxm_error **err, int errnum, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Prefixes context to an existing error: "ctx: old message", unless the message already starts
 * with "ctx: " (a server's error that names the same step as its client). Returns -(*err)->errnum,
 * or -EIO when the error carries no errno. A NULL err or *err is allowed (returns -EIO). */
int lxm_error_prefix(struct lxm_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void lxm_error_free(struct lxm_error *e);

static inline void lxm_error_freep(struct lxm_error **e)
{
	lxm_error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(lxm_error_freep)))
