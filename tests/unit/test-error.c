#include "config.h"

#include <errno.h>
#include <string.h>

#include "error.h"
#include "tap.h"

int main(void)
{
	struct lxm_error *err = NULL;

	is_int(lxm_error_setx(&err, -ENOENT, 404, "mount rootfs: %s", "/x"), -ENOENT,
	       "setx returns the errno");
	is_str(err->msg, "mount rootfs: /x: No such file or directory", "cause appended");
	is_int(err->status, 404, "status kept");
	is_int(lxm_error_prefix(&err, "start '%s'", "web1"), -ENOENT, "prefix returns the errno");
	is_str(err->msg, "start 'web1': mount rootfs: /x: No such file or directory",
	       "context first, cause last");
	lxm_error_prefix(&err, "start '%s'", "web1");
	is_str(err->msg, "start 'web1': mount rootfs: /x: No such file or directory",
	       "the same context is not added twice");
	lxm_error_prefix(&err, "start");
	is_str(err->msg, "start: start 'web1': mount rootfs: /x: No such file or directory",
	       "a context that is only a prefix of a word is still added");
	is_int(lxm_error_set(&err, -EINVAL, 400, "other"), -EINVAL, "set on a set error");
	is_str(err->msg, "start: start 'web1': mount rootfs: /x: No such file or directory",
	       "the first error is kept");
	lxm_error_free(err);
	err = NULL;
	is_int(lxm_error_set(&err, 0, 0, "plain"), -EIO, "no errno: -EIO");
	is_int(err->status, 500, "default status 500");
	lxm_error_free(err);
	is_int(lxm_error_set(NULL, ENOMEM, 500, "x"), -ENOMEM, "NULL err and positive errno");
	is_int(lxm_error_prefix(NULL, "x"), -EIO, "prefix of nothing");
	lxm_error_free(NULL);
	return tap_done();
}
