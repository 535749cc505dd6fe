#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

char *lxm_rfc3339(const struct timespec *ts, char buf[static LXM_RFC3339_MAX])
{
	struct tm tm;

	gmtime_r(&ts->tv_sec, &tm);
	snprintf(buf, LXM_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(ts->tv_nsec % 1000000000L));
	return buf;
}

char *lxm_rfc3339_now(char buf[static LXM_RFC3339_MAX])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return lxm_rfc3339(&ts, buf);
}

int64_t lxm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint64_t lxm_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000ULL;
}

int lxm_random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void lxm_hex(const void *data, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *b = data;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 0xf];
	}
	out[2 * n] = '\0';
}

int lxm_random_hex(char *out, size_t nbytes)
{
	uint8_t raw[256];
	int r;

	if (nbytes > sizeof(raw))
		return -EINVAL;
	r = lxm_random_bytes(raw, nbytes);
	if (r < 0)
		return r;
	lxm_hex(raw, nbytes, out);
	return 0;
}

int lxm_uuid4(char out[static 37])
{
	uint8_t u[16];
	int r;

	r = lxm_random_bytes(u, sizeof(u));
	if (r < 0)
		return r;
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
	return 0;
}

int lxm_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int lxm_rm_tree(const char *path)
{
	int k;

	if (!path)
		return 0;
	/* A callback's -errno comes back as it is; nftw's own failure sets errno. */
	errno = 0;
	k = nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	if (k == -1)
		return errno == ENOENT ? 0 : -errno;
	return k;
}

int lxm_read_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nbuf = realloc(buf, cap + 65536);

			if (!nbuf)
				return -ENOMEM;
			buf = nbuf;
			cap += 65536;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (!buf) {
		buf = strdup("");
		if (!buf)
			return -ENOMEM;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int lxm_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = resolve,
	};

	for (int i = 0; i < 32; i++) {
		long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return -EAGAIN;
}

void lxm_unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

void lxm_fs_log(int fsfd, char *buf, size_t len)
{
	char line[512];
	ssize_t n;

	buf[0] = '\0';
	while ((n = read(fsfd, line, sizeof(line) - 1)) > 0) {
		line[n] = '\0';
		line[strcspn(line, "\n")] = '\0';
		if (n > 2 && line[0] == 'e' && line[1] == ' ')
			snprintf(buf, len, " (%.200s)", line + 2);
	}
}

int lxm_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int lxm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = lxm_write_all(fd, data, len);
	if (r < 0)
		goto fail;
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	unlink(tmp);
	return r;
}

const char *lxm_name_invalid_reason(const char *name)
{
	size_t len;

	if (!name || !*name)
		return "name is empty";
	len = strlen(name);
	if (len > 63)
		return "name is longer than 63 characters";
	if (isdigit((unsigned char)name[0]))
		return "name must not start with a digit";
	if (name[0] == '-')
		return "name must not start with '-'";
	if (name[len - 1] == '-')
		return "name must not end with '-'";
	for (const char *s = name; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-')
			return "name may only contain letters, digits and '-'";
	return NULL;
}

const char *lxm_entity_name_invalid_reason(const char *name)
{
	if (!name || !*name)
		return "name is empty";
	if (strlen(name) > 63)
		return "name is longer than 63 characters";
	if (streq(name, ".") || streq(name, ".."))
		return "name must not be '.' or '..'";
	for (const char *s = name; *s; s++) {
		if (*s == '/')
			return "name must not contain '/'";
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return "name must not contain whitespace or control characters";
	}
	return NULL;
}

bool lxm_path_is_clean(const char *p)
{
	if (!p || p[0] != '/')
		return false;
	for (const char *c = p; *c;) {
		size_t n;

		while (*c == '/')
			c++;
		n = strcspn(c, "/");
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n;
	}
	return true;
}
