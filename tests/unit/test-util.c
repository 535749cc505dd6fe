#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "tap.h"
#include "util.h"

int main(void)
{
	char buf[LXM_RFC3339_MAX], hex[65], uuid[37], dir[] = "/tmp/lxm-unit-util-XXXXXX",
						      path[256];
	struct timespec ts = { 1714557600, 5 };
	_cleanup_free_ char *data = NULL;
	size_t len = 0;

	is_str(lxm_rfc3339(&ts, buf), "2024-05-01T10:00:00.000000005Z", "RFC 3339 with zone");
	ok(lxm_random_hex(hex, 32) == 0 && strlen(hex) == 64 &&
		   strspn(hex, "0123456789abcdef") == 64,
	   "64 hex chars");
	ok(lxm_uuid4(uuid) == 0 && strlen(uuid) == 36 && uuid[14] == '4' && uuid[8] == '-',
	   "uuid v4 shape: %s", uuid);

	ok(lxm_name_invalid_reason("web1") == NULL, "web1 valid");
	ok(lxm_name_invalid_reason("a-b-c") == NULL, "a-b-c valid");
	ok(lxm_name_invalid_reason("1abc") != NULL, "leading digit invalid");
	ok(lxm_name_invalid_reason("-x") != NULL, "leading dash invalid");
	ok(lxm_name_invalid_reason("x-") != NULL, "trailing dash invalid");
	ok(lxm_name_invalid_reason("a_b") != NULL, "underscore invalid");
	ok(lxm_name_invalid_reason("") != NULL, "empty invalid");
	ok(lxm_name_invalid_reason(
		   "a234567890123456789012345678901234567890123456789012345678901234") != NULL,
	   "64 chars invalid");
	ok(lxm_entity_name_invalid_reason("my profile") != NULL, "space in profile name invalid");
	ok(lxm_entity_name_invalid_reason("a/b") != NULL, "slash invalid");
	ok(lxm_entity_name_invalid_reason("..") != NULL, "dot-dot invalid");
	ok(lxm_entity_name_invalid_reason("web_servers.v2") == NULL, "profile name valid");

	ok(mkdtemp(dir) != NULL, "temp dir");
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	ok(lxm_mkdir_p(path, 0755) == 0, "mkdir -p");
	ok(lxm_mkdir_p(path, 0755) == 0, "mkdir -p again is fine");
	snprintf(path, sizeof(path), "%s/a/f", dir);
	ok(lxm_write_file_atomic(path, "hello", 5, 0600) == 0, "atomic write");
	ok(lxm_read_file(path, &data, &len) == 0 && len == 5 && streq(data, "hello"), "read back");
	{
		struct stat st;

		ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode applied");
	}
	snprintf(path, sizeof(path), "%s/nope/f", dir);
	is_int(lxm_write_file_atomic(path, "x", 1, 0600), -ENOENT, "write into missing dir fails");
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	ok(system(path) == 0, "cleaned up");
	return tap_done();
}
