#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum lxm_log_level log_level = LXM_LOG_INFO;
static int log_fd = -1;
static bool log_stderr = true;

static const char *const level_names[_LXM_LOG_LEVEL_MAX] = {
	[LXM_LOG_ERROR] = "error",
	[LXM_LOG_WARN] = "warn",
	[LXM_LOG_INFO] = "info",
	[LXM_LOG_DEBUG] = "debug",
};

enum lxm_log_level lxm_log_level_from_string(const char *s)
{
	if (!s)
		return _LXM_LOG_LEVEL_INVALID;
	if (strcasecmp(s, "warning") == 0)
		return LXM_LOG_WARN;
	for (int i = 0; i < _LXM_LOG_LEVEL_MAX; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return _LXM_LOG_LEVEL_INVALID;
}

const char *lxm_log_level_to_string(enum lxm_log_level l)
{
	if (l < 0 || l >= _LXM_LOG_LEVEL_MAX)
		return NULL;
	return level_names[l];
}

void lxm_log_set_level(enum lxm_log_level l)
{
	log_level = l;
}

enum lxm_log_level lxm_log_get_level(void)
{
	return log_level;
}

int lxm_log_open_file(const char *path)
{
	int fd = -1;

	if (path) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void lxm_log_set_stderr(bool on)
{
	log_stderr = on;
}

void lxm_log(enum lxm_log_level l, const char *fmt, ...)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;

	if (l > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_names[l]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';

	/* Short writes to a log are not worth failing over; the result is deliberately ignored. */
	if (log_stderr && write(STDERR_FILENO, line, n) < 0) {
	}
	if (log_fd >= 0 && write(log_fd, line, n) < 0) {
	}
}
