/* A minimal TAP producer for the C unit tests: `ok(cond, "what")`, then `return tap_done();`. The
 * automake TAP driver turns each line into a PASS/FAIL result. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

static inline __attribute__((format(printf, 2, 3))) int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

#define ok(cond, ...)                                                                              \
	(tap_ok(!!(cond), __VA_ARGS__) ||                                                          \
	 (fprintf(stdout, "#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond), 0))

#define is_int(got, want, name)                                                                    \
	do {                                                                                       \
		long long _g = (long long)(got), _w = (long long)(want);                           \
		if (!tap_ok(_g == _w, "%s", name))                                                 \
			printf("#   %s:%d: got %lld, want %lld\n", __FILE__, __LINE__, _g, _w);    \
	} while (0)

#define is_str(got, want, name)                                                                    \
	do {                                                                                       \
		const char *_g = (got), *_w = (want);                                              \
		int _eq = (_g && _w) ? strcmp(_g, _w) == 0 : _g == _w;                             \
		if (!tap_ok(_eq, "%s", name))                                                      \
			printf("#   %s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,         \
			       _g ? _g : "(null)", _w ? _w : "(null)");                            \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}
