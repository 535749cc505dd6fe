/* Value parsers of the policy compiler: sizes, CPU sets, CPU allowances, booleans, integers,
 * signals and time offsets. They are strict (a value either means exactly one thing or is an
 * error) because a limit that silently means something else is worse than a refused one. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "policy-internal.h"
#include "policy.h"
#include "util.h"

/* Values longer than this are cut in error messages. */
#define SHOWN_VALUE_MAX 64

/* The CPU period a percentage allowance uses, and the bounds the kernel puts on cpu.max. */
#define ALLOWANCE_PERIOD_US 100000
#define PERIOD_MIN_US	    1000
#define PERIOD_MAX_US	    1000000
#define QUOTA_MIN_US	    1000

/* CPU ids above this are refused before any allocation depends on them. */
#define CPU_ID_MAX (1u << 20)

/* Decimal places a size or percentage may have; more is no longer a meaningful limit. */
#define FRACTION_DIGITS_MAX 9

int lxm_policy_bad_value(struct lxm_error **err, const char *key, const char *value,
			 const char *fmt, ...)
{
	_cleanup_free_ char *reason = NULL;
	size_t len = value ? strlen(value) : 0;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&reason, fmt, ap);
	va_end(ap);
	if (r < 0)
		return lxm_error_set(err, -EINVAL, 400, "config key '%s': invalid value", key);
	return lxm_error_set(err, -EINVAL, 400, "config key '%s': invalid value '%.*s%s': %s", key,
			     SHOWN_VALUE_MAX, value ? value : "",
			     len > SHOWN_VALUE_MAX ? "..." : "", reason);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_space(const char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

/* Whether s holds only white space from here on. */
static bool at_end(const char *s)
{
	return *skip_space(s) == '\0';
}

/* Reads "123" or "1.5" at *p. All digits go into *ret_mant as one integer and *ret_frac counts
 * those after the point, so that 1.5 is (15, 1) and nothing is lost to floating point. Returns
 * -EINVAL when there is no number here and -ERANGE when it does not fit. */
static int read_decimal(const char **p, bool allow_fraction, uint64_t *ret_mant, unsigned *ret_frac)
{
	const char *s = *p;
	unsigned int_digits = 0, frac = 0;
	uint64_t m = 0;

	for (; is_digit(*s); s++, int_digits++) {
		if (m > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		m = m * 10 + (uint64_t)(*s - '0');
	}
	if (int_digits == 0)
		return -EINVAL;
	if (allow_fraction && *s == '.' && is_digit(s[1])) {
		for (s++; is_digit(*s); s++, frac++) {
			if (frac == FRACTION_DIGITS_MAX || m > (UINT64_MAX - 9) / 10)
				return -ERANGE;
			m = m * 10 + (uint64_t)(*s - '0');
		}
	}
	*p = s;
	*ret_mant = m;
	*ret_frac = frac;
	return 0;
}

static uint64_t pow10u(unsigned n)
{
	uint64_t r = 1;

	while (n--)
		r *= 10;
	return r;
}

/* mant / 10^frac * mul / div, rounded down; false when the result is more than INT64_MAX. */
static bool scale(uint64_t mant, unsigned frac, uint64_t mul, uint64_t div, int64_t *ret)
{
	unsigned __int128 v = (unsigned __int128)mant * mul / div / pow10u(frac);

	if (v > INT64_MAX)
		return false;
	*ret = (int64_t)v;
	return true;
}

static const struct {
	const char *name;
	uint64_t bytes;
} size_units[] = {
	{ "B", 1 },
	{ "kB", 1000ULL },
	{ "MB", 1000ULL * 1000 },
	{ "GB", 1000ULL * 1000 * 1000 },
	{ "TB", 1000ULL * 1000 * 1000 * 1000 },
	{ "PB", 1000ULL * 1000 * 1000 * 1000 * 1000 },
	{ "EB", 1000ULL * 1000 * 1000 * 1000 * 1000 * 1000 },
	{ "KiB", 1ULL << 10 },
	{ "MiB", 1ULL << 20 },
	{ "GiB", 1ULL << 30 },
	{ "TiB", 1ULL << 40 },
	{ "PiB", 1ULL << 50 },
	{ "EiB", 1ULL << 60 },
};

/* Units compare without case: "1gib" and "1GB" are unambiguous, and refusing them only annoys.
 * Single letters ("512M") are refused because tools disagree on whether they mean 10^6 or 2^20. */
static int size_unit(const char *s, uint64_t *ret)
{
	size_t n = strlen(s);

	while (n > 0 && is_space(s[n - 1]))
		n--;
	for (size_t k = 0; k < ARRAY_SIZE(size_units); k++)
		if (strlen(size_units[k].name) == n && strncasecmp(s, size_units[k].name, n) == 0) {
			*ret = size_units[k].bytes;
			return 0;
		}
	return -EINVAL;
}

#define SIZE_EXPECTED                                                                              \
	"expected a number of bytes with an optional unit (B, kB, MB, GB, TB, KiB, MiB, GiB, "     \
	"TiB, ...) or a percentage of the host's memory, e.g. 512MiB, 1GB, 1073741824 or 50%%"

int lxm_parse_size(const char *key, const char *value, uint64_t percent_of, int64_t *ret,
		   struct lxm_error **err)
{
	const char *s = skip_space(value ? value : "");
	uint64_t mant, unit = 1;
	unsigned frac;
	int64_t bytes;
	int r;

	if (*s == '\0')
		return lxm_policy_bad_value(err, key, value, "a size is required: " SIZE_EXPECTED);
	if (*s == '-')
		return lxm_policy_bad_value(err, key, value, "a size cannot be negative");
	r = read_decimal(&s, true, &mant, &frac);
	if (r == -ERANGE)
		return lxm_policy_bad_value(err, key, value,
					    "too large or too precise (at most 8 EiB, %d decimals)",
					    FRACTION_DIGITS_MAX);
	if (r < 0)
		return lxm_policy_bad_value(err, key, value, SIZE_EXPECTED);
	s = skip_space(s);

	if (*s == '%') {
		if (!at_end(s + 1))
			return lxm_policy_bad_value(err, key, value, SIZE_EXPECTED);
		if (percent_of == 0)
			return lxm_policy_bad_value(err, key, value,
						    "a percentage needs the host's memory size, "
						    "which is unknown here; use a size such as "
						    "512MiB");
		if (mant > 100 * pow10u(frac))
			return lxm_policy_bad_value(err, key, value,
						    "more than 100%% of the host's memory");
		if (!scale(mant, frac, percent_of, 100, &bytes))
			return lxm_policy_bad_value(err, key, value, "too large");
	} else {
		if (*s != '\0' && size_unit(s, &unit) < 0)
			return lxm_policy_bad_value(err, key, value,
						    "unknown unit '%s' (use MiB for 2^20 bytes or "
						    "MB for 10^6 bytes; B, kB, GB, KiB, GiB, TB, "
						    "TiB, ... work too)",
						    s);
		if (!scale(mant, frac, unit, 1, &bytes))
			return lxm_policy_bad_value(err, key, value,
						    "more than the largest size (8 EiB)");
	}
	/* Zero would be a container that cannot run anything: nobody means that as a limit. */
	if (bytes == 0)
		return lxm_policy_bad_value(err, key, value,
					    "a size of 0 is not a limit: use a positive size or "
					    "unset the key");
	*ret = bytes;
	return 0;
}

/* Reads an unsigned integer of at most CPU_ID_MAX at *p. */
static int read_cpu_number(const char **p, unsigned *ret)
{
	uint64_t v;
	unsigned frac;
	int r;

	r = read_decimal(p, false, &v, &frac);
	if (r < 0)
		return r;
	if (v > CPU_ID_MAX)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

static void append_range(struct lxm_buf *b, unsigned first, unsigned last)
{
	if (first == last)
		lxm_buf_printf(b, "%s%u", b->len ? "," : "", first);
	else
		lxm_buf_printf(b, "%s%u-%u", b->len ? "," : "", first, last);
}

#define CPU_EXPECTED                                                                               \
	"expected a number of CPUs (2) or CPU ids and ranges in ascending order (0-1,3)"

/* A list such as "0-1, 3,4": ascending and without overlaps (a list out of order is usually a
 * typo, and refusing it keeps one canonical form); adjacent items are merged. */
static int parse_cpu_list(const char *key, const char *value, unsigned ncpus, char **ret,
			  struct lxm_error **err)
{
	struct lxm_buf b = { 0 };
	const char *s = value;
	bool have = false;
	unsigned first = 0, last = 0;

	for (;;) {
		unsigned a, z;
		int r;

		s = skip_space(s);
		r = read_cpu_number(&s, &a);
		z = a;
		if (r == 0 && *s == '-') {
			s++;
			r = read_cpu_number(&s, &z);
		}
		if (r < 0) {
			lxm_buf_done(&b);
			return lxm_policy_bad_value(err, key, value, CPU_EXPECTED);
		}
		if (z < a) {
			lxm_buf_done(&b);
			return lxm_policy_bad_value(err, key, value,
						    "range %u-%u is backwards (write %u-%u)", a, z,
						    z, a);
		}
		if (ncpus > 0 && z >= ncpus) {
			lxm_buf_done(&b);
			return lxm_policy_bad_value(err, key, value,
						    "CPU %u does not exist: the host's CPUs are "
						    "0-%u",
						    z, ncpus - 1);
		}
		if (have && a <= last) {
			lxm_buf_done(&b);
			return lxm_policy_bad_value(err, key, value,
						    "CPU ids must be in ascending order without "
						    "overlaps, e.g. 0-1,3");
		}
		if (have && a == last + 1) {
			last = z;
		} else {
			if (have)
				append_range(&b, first, last);
			first = a;
			last = z;
			have = true;
		}
		s = skip_space(s);
		if (*s == '\0')
			break;
		if (*s != ',') {
			lxm_buf_done(&b);
			return lxm_policy_bad_value(err, key, value, CPU_EXPECTED);
		}
		s++;
	}
	append_range(&b, first, last);
	*ret = lxm_buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

int lxm_parse_cpu(const char *key, const char *value, unsigned ncpus, char **ret_cpuset,
		  struct lxm_error **err)
{
	const char *s = skip_space(value ? value : "");
	const char *end = s;
	unsigned count;
	char *set = NULL;

	if (*s == '\0')
		return lxm_policy_bad_value(err, key, value, "a value is required: " CPU_EXPECTED);
	if (*s == '-')
		return lxm_policy_bad_value(err, key, value, "a CPU count cannot be negative");
	/* A bare number is a count, as in LXD; pinning to one CPU is written "3-3". */
	if (read_cpu_number(&end, &count) < 0 || !at_end(end))
		return parse_cpu_list(key, s, ncpus, ret_cpuset, err);
	if (count == 0)
		return lxm_policy_bad_value(err, key, value,
					    "at least one CPU is needed: use a count of 1 or more, "
					    "or a list such as 0-1,3");
	if (ncpus > 0 && count > ncpus)
		return lxm_policy_bad_value(err, key, value,
					    "asks for %u CPUs but the host has %u: use at most %u",
					    count, ncpus, ncpus);
	if ((count == 1 ? asprintf(&set, "0") : asprintf(&set, "0-%u", count - 1)) < 0)
		return -ENOMEM;
	*ret_cpuset = set;
	return 0;
}

/* "25ms", "2.5ms", "100000us", "1s" in microseconds, rounded down. */
static int read_duration_us(const char **p, int64_t *ret)
{
	static const struct {
		const char *name;
		uint64_t us;
	} units[] = { { "us", 1 }, { "ms", 1000 }, { "s", 1000000 } };
	const char *s = *p;
	uint64_t mant;
	unsigned frac;

	if (read_decimal(&s, true, &mant, &frac) < 0)
		return -EINVAL;
	s = skip_space(s);
	for (size_t k = 0; k < ARRAY_SIZE(units); k++) {
		size_t n = strlen(units[k].name);

		if (strncmp(s, units[k].name, n) == 0 && !(s[n] >= 'a' && s[n] <= 'z')) {
			if (!scale(mant, frac, units[k].us, 1, ret))
				return -ERANGE;
			*p = s + n;
			return 0;
		}
	}
	return -EINVAL;
}

#define ALLOWANCE_EXPECTED                                                                         \
	"expected a percentage of one CPU (50%%, or 150%% for one and a half CPUs) or a run "      \
	"time per period (25ms/100ms)"

static int parse_allowance_time(const char *key, const char *value, const char *s,
				int64_t *ret_quota_us, int64_t *ret_period_us,
				struct lxm_error **err)
{
	int64_t quota, period;

	if (read_duration_us(&s, &quota) < 0)
		return lxm_policy_bad_value(err, key, value, ALLOWANCE_EXPECTED);
	s = skip_space(s);
	if (*s != '/')
		return lxm_policy_bad_value(err, key, value, ALLOWANCE_EXPECTED);
	s = skip_space(s + 1);
	if (read_duration_us(&s, &period) < 0 || !at_end(s))
		return lxm_policy_bad_value(err, key, value, ALLOWANCE_EXPECTED);
	if (period < PERIOD_MIN_US || period > PERIOD_MAX_US)
		return lxm_policy_bad_value(err, key, value,
					    "the period must be between 1ms and 1s (the kernel's "
					    "bounds), e.g. 25ms/100ms");
	if (quota < QUOTA_MIN_US)
		return lxm_policy_bad_value(err, key, value,
					    "the run time must be at least 1ms, e.g. 25ms/100ms");
	*ret_quota_us = quota;
	*ret_period_us = period;
	return 0;
}

int lxm_parse_allowance(const char *key, const char *value, int64_t *ret_quota_us,
			int64_t *ret_period_us, struct lxm_error **err)
{
	const char *s = skip_space(value ? value : "");
	const char *p = s;
	uint64_t mant;
	unsigned frac;
	int64_t quota;

	if (*s == '\0')
		return lxm_policy_bad_value(err, key, value,
					    "a value is required: " ALLOWANCE_EXPECTED);
	if (*s == '-')
		return lxm_policy_bad_value(err, key, value, "an allowance cannot be negative");
	if (read_decimal(&p, true, &mant, &frac) == 0 && *skip_space(p) == '%') {
		if (!at_end(skip_space(p) + 1))
			return lxm_policy_bad_value(err, key, value, ALLOWANCE_EXPECTED);
		if (!scale(mant, frac, ALLOWANCE_PERIOD_US, 100, &quota))
			return lxm_policy_bad_value(err, key, value, "too large");
		if (quota < QUOTA_MIN_US)
			return lxm_policy_bad_value(err, key, value,
						    "less than 1%% of a CPU (the kernel's smallest "
						    "run time is 1ms per 100ms)");
		*ret_quota_us = quota;
		*ret_period_us = ALLOWANCE_PERIOD_US;
		return 0;
	}
	return parse_allowance_time(key, value, s, ret_quota_us, ret_period_us, err);
}

int lxm_parse_bool(const char *key, const char *value, bool *ret, struct lxm_error **err)
{
	if (streq(value, "true"))
		*ret = true;
	else if (streq(value, "false"))
		*ret = false;
	else
		return lxm_policy_bad_value(err, key, value, "expected true or false");
	return 0;
}

/* A signed decimal integer filling all of s (surrounding spaces aside), or -EINVAL/-ERANGE. */
static int read_int(const char *s, int64_t *ret)
{
	bool neg = false;
	uint64_t mant;
	unsigned frac;
	int r;

	s = skip_space(s);
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	r = read_decimal(&s, false, &mant, &frac);
	if (r < 0)
		return r;
	if (!at_end(s))
		return -EINVAL;
	if (mant > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return -ERANGE;
	*ret = neg ? (int64_t)(0 - mant) : (int64_t)mant;
	return 0;
}

int lxm_parse_int(const char *key, const char *value, int64_t min, int64_t max, int64_t *ret,
		  struct lxm_error **err)
{
	int64_t v;

	if (read_int(value ? value : "", &v) < 0 || v < min || v > max) {
		if (max == INT64_MAX)
			return lxm_policy_bad_value(err, key, value,
						    "expected a whole number of at least %" PRId64,
						    min);
		return lxm_policy_bad_value(err, key, value,
					    "expected a whole number from %" PRId64 " to %" PRId64,
					    min, max);
	}
	*ret = v;
	return 0;
}

static const struct {
	const char *name;
	int number;
} signal_names[] = {
	{ "HUP", SIGHUP },	   { "INT", SIGINT },	      { "QUIT", SIGQUIT },
	{ "ILL", SIGILL },	   { "TRAP", SIGTRAP },	      { "ABRT", SIGABRT },
	{ "BUS", SIGBUS },	   { "FPE", SIGFPE },	      { "KILL", SIGKILL },
	{ "USR1", SIGUSR1 },	   { "SEGV", SIGSEGV },	      { "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE },	   { "ALRM", SIGALRM },	      { "TERM", SIGTERM },
	{ "CHLD", SIGCHLD },	   { "CONT", SIGCONT },	      { "STOP", SIGSTOP },
	{ "TSTP", SIGTSTP },	   { "TTIN", SIGTTIN },	      { "TTOU", SIGTTOU },
	{ "URG", SIGURG },	   { "XCPU", SIGXCPU },	      { "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM },   { "PROF", SIGPROF },	      { "WINCH", SIGWINCH },
	{ "IO", SIGIO },	   { "PWR", SIGPWR },	      { "SYS", SIGSYS },
	{ "RTMIN", LXM_SIGRTMIN }, { "RTMAX", LXM_SIGRTMAX },
};

/* "RTMIN+3" / "RTMAX-2" after the base name; an offset outside the real-time range is refused. */
static int signal_offset(const char *s, int base, int *ret)
{
	int64_t off;

	if (*s == '\0') {
		*ret = base;
		return 0;
	}
	if ((base == LXM_SIGRTMIN && *s != '+') || (base == LXM_SIGRTMAX && *s != '-') ||
	    !is_digit(s[1]) || read_int(s + 1, &off) < 0 || off > LXM_SIGRTMAX - LXM_SIGRTMIN)
		return -EINVAL;
	*ret = base == LXM_SIGRTMIN ? base + (int)off : base - (int)off;
	return 0;
}

#define SIGNAL_EXPECTED "expected a signal name or number such as SIGPWR, SIGRTMIN+3, SIGUSR2 or 30"

static int signal_by_name(const char *key, const char *value, const char *s, int *ret,
			  struct lxm_error **err)
{
	const char *names[ARRAY_SIZE(signal_names)];

	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t k = 0; k < ARRAY_SIZE(signal_names); k++) {
		size_t n = strlen(signal_names[k].name);
		int base = signal_names[k].number;

		names[k] = signal_names[k].name;
		if (strncasecmp(s, signal_names[k].name, n) != 0)
			continue;
		if (base == LXM_SIGRTMIN || base == LXM_SIGRTMAX) {
			if (signal_offset(s + n, base, ret) == 0)
				return 0;
			return lxm_policy_bad_value(err, key, value,
						    "real-time signals are SIGRTMIN+N or "
						    "SIGRTMAX-N with N from 0 to %d",
						    LXM_SIGRTMAX - LXM_SIGRTMIN);
		}
		if (s[n] == '\0') {
			*ret = base;
			return 0;
		}
	}
	return lxm_policy_bad_value(err, key, value, "unknown signal (did you mean SIG%s?); %s",
				    lxm_closest_word(s, names, ARRAY_SIZE(names)), SIGNAL_EXPECTED);
}

int lxm_parse_signal(const char *key, const char *value, int *ret, struct lxm_error **err)
{
	_cleanup_free_ char *word = NULL;
	const char *s = skip_space(value ? value : "");
	size_t n;
	int64_t num;
	int sig;

	n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		n--;
	word = strndup(s, n);
	if (!word)
		return -ENOMEM;
	if (*word == '\0')
		return lxm_policy_bad_value(err, key, value, SIGNAL_EXPECTED);
	if (is_digit(*word)) {
		if (read_int(word, &num) < 0 || num < 1 || num > LXM_SIGRTMAX)
			return lxm_policy_bad_value(err, key, value,
						    "signal numbers go from 1 to %d; %s",
						    LXM_SIGRTMAX, SIGNAL_EXPECTED);
		sig = (int)num;
	} else {
		int r = signal_by_name(key, value, word, &sig, err);

		if (r < 0)
			return r;
	}
	/* The point of the signal is a clean shutdown that init handles; these two it cannot. */
	if (sig == SIGKILL || sig == SIGSTOP)
		return lxm_policy_bad_value(
			err, key, value,
			"init cannot handle SIGKILL or SIGSTOP, so it could not "
			"shut down cleanly (a forced stop kills it anyway); "
			"use e.g. SIGPWR or SIGRTMIN+3");
	*ret = sig;
	return 0;
}

/* The kernel keeps time namespace offsets within its clock range (KTIME_SEC_MAX seconds). */
#define TIME_OFFSET_MAX (INT64_MAX / 1000000000)

#define TIME_OFFSET_EXPECTED                                                                       \
	"expected seconds for both clocks (3600) or per clock (monotonic=3600 boottime=-60)"

static int parse_clock_offset(const char *key, const char *value, const char *word, int64_t *mono,
			      bool *have_mono, int64_t *boot, bool *have_boot,
			      struct lxm_error **err)
{
	static const char *const clocks[] = { "monotonic", "boottime" };
	const char *eq = strchr(word, '=');
	size_t n = eq ? (size_t)(eq - word) : 0;
	bool is_mono = eq && n == 9 && strncmp(word, "monotonic", n) == 0;
	bool is_boot = eq && n == 8 && strncmp(word, "boottime", n) == 0;
	int64_t v;

	if (!is_mono && !is_boot) {
		/* Suggest from the clock name alone: "=5" says nothing about which clock. */
		_cleanup_free_ char *clock = strndup(word, eq ? n : strlen(word));

		if (!clock)
			return -ENOMEM;
		return lxm_policy_bad_value(
			err, key, value, "'%s' does not name a clock (did you mean %s?); %s", word,
			lxm_closest_word(clock, clocks, 2), TIME_OFFSET_EXPECTED);
	}
	if ((is_mono && *have_mono) || (is_boot && *have_boot))
		return lxm_policy_bad_value(err, key, value, "%.*s is given twice", (int)n, word);
	if (read_int(eq + 1, &v) < 0 || v < -TIME_OFFSET_MAX || v > TIME_OFFSET_MAX)
		return lxm_policy_bad_value(
			err, key, value,
			"%.*s needs a whole number of seconds from %" PRId64 " to %" PRId64, (int)n,
			word, (int64_t)-TIME_OFFSET_MAX, (int64_t)TIME_OFFSET_MAX);
	if (is_mono) {
		*mono = v;
		*have_mono = true;
	} else {
		*boot = v;
		*have_boot = true;
	}
	return 0;
}

int lxm_parse_time_offset(const char *key, const char *value, int64_t *ret_monotonic,
			  int64_t *ret_boottime, struct lxm_error **err)
{
	_cleanup_strv_ char **words = NULL;
	int64_t mono = 0, boot = 0, v;
	bool have_mono = false, have_boot = false;
	int r;

	if (read_int(value ? value : "", &v) == 0) {
		if (v < -TIME_OFFSET_MAX || v > TIME_OFFSET_MAX)
			return lxm_policy_bad_value(
				err, key, value,
				"an offset must be from %" PRId64 " to %" PRId64 " seconds",
				(int64_t)-TIME_OFFSET_MAX, (int64_t)TIME_OFFSET_MAX);
		*ret_monotonic = *ret_boottime = v;
		return 0;
	}
	r = lxm_split_words(value ? value : "", &words);
	if (r < 0)
		return r;
	if (!words[0])
		return lxm_policy_bad_value(err, key, value, TIME_OFFSET_EXPECTED);
	for (char **w = words; *w; w++) {
		r = parse_clock_offset(key, value, *w, &mono, &have_mono, &boot, &have_boot, err);
		if (r < 0)
			return r;
	}
	*ret_monotonic = mono;
	*ret_boottime = boot;
	return 0;
}

static bool is_separator(char c)
{
	return c == ',' || is_space(c);
}

int lxm_split_words(const char *value, char ***ret)
{
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, k = 0;
	const char *s;

	for (s = value; *s; s++)
		if (!is_separator(*s) && (s == value || is_separator(s[-1])))
			n++;
	v = calloc(n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (s = value; *s;) {
		size_t len = 0;

		while (is_separator(*s))
			s++;
		while (s[len] && !is_separator(s[len]))
			len++;
		if (len == 0)
			break;
		v[k] = strndup(s, len);
		if (!v[k])
			return -ENOMEM;
		k++;
		s += len;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* Edit distance over at most WORD_MAX characters: enough to suggest a name, never a VLA. */
#define WORD_MAX 64

/* ASCII only: names are ASCII, and the locale must not change what matches. */
static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static unsigned edit_distance(const char *a, const char *b)
{
	unsigned row[WORD_MAX + 1];
	size_t la = strnlen(a, WORD_MAX), lb = strnlen(b, WORD_MAX);

	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];

		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
			unsigned best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *lxm_closest_word(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	unsigned best_d = UINT_MAX;

	for (size_t k = 0; k < n; k++) {
		unsigned d;

		if (!candidates[k])
			continue;
		d = edit_distance(word, candidates[k]);
		if (d < best_d) {
			best_d = d;
			best = candidates[k];
		}
	}
	return best ? best : "";
}

void lxm_buf_printf(struct lxm_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->oom = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

char *lxm_buf_steal(struct lxm_buf *b)
{
	char *s = b->oom ? NULL : b->s;

	if (b->oom)
		free(b->s);
	*b = (struct lxm_buf){ 0 };
	return s;
}

void lxm_buf_done(struct lxm_buf *b)
{
	free(b->s);
	*b = (struct lxm_buf){ 0 };
}
