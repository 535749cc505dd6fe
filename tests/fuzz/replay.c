/* Runs a fuzz target over its checked-in corpus without libFuzzer, so that every `make check`
 * replays the seeds and the crashes found so far. With arguments it replays those files and
 * directories instead. Output is TAP: one line per input, then the plan. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fuzz.h"
#include "util.h"

static unsigned int n_tests, n_failed;

static void replay_file(const char *path)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r;

	n_tests++;
	r = lxm_read_file(path, &data, &len);
	if (r < 0) {
		n_failed++;
		printf("not ok %u - %s: %s\n", n_tests, path, strerror(-r));
		return;
	}
	/* A crash or a sanitizer report ends the run here, before the plan: the TAP driver
	 * counts that as a failure. */
	LLVMFuzzerTestOneInput((const uint8_t *)data, len);
	printf("ok %u - %s\n", n_tests, path);
	fflush(stdout);
}

static int skip_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Replays the regular files of dir in name order. Returns how many there were, or -errno. */
static int replay_dir(const char *dir)
{
	struct dirent **names = NULL;
	int n, count = 0;

	n = scandir(dir, &names, skip_hidden, alphasort);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *path = NULL;
		struct stat st;

		if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
			path = NULL;
		if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			replay_file(path);
			count++;
		}
		free(names[i]);
	}
	free(names);
	return count;
}

int main(int argc, char **argv)
{
	_cleanup_free_ char *dir = NULL;
	const char *base;
	int r;

	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			struct stat st;

			if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
				replay_file(argv[i]);
				continue;
			}
			r = replay_dir(argv[i]);
			if (r < 0) {
				n_tests++;
				n_failed++;
				printf("not ok %u - %s: %s\n", n_tests, argv[i], strerror(-r));
			}
		}
		printf("1..%u\n", n_tests);
		return n_failed ? 1 : 0;
	}

	base = getenv("LXM_FUZZ_CORPUS");
#ifdef LXM_SRCDIR
	if (!base || !*base)
		base = LXM_SRCDIR "/tests/fuzz/corpus";
#endif
	if (!base || !*base) {
		printf("Bail out! LXM_FUZZ_CORPUS is not set\n");
		return 1;
	}
	if (asprintf(&dir, "%s/%s", base, lxm_fuzz_corpus_name()) < 0) {
		dir = NULL;
		printf("Bail out! out of memory\n");
		return 1;
	}
	/* A missing or empty corpus would make the test pass without testing anything. */
	r = replay_dir(dir);
	if (r < 0) {
		printf("Bail out! corpus %s: %s\n", dir, strerror(-r));
		return 1;
	}
	if (r == 0) {
		printf("Bail out! corpus %s has no inputs\n", dir);
		return 1;
	}
	printf("1..%u\n", n_tests);
	return n_failed ? 1 : 0;
}
