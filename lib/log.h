/* Logging for programs, not libraries: helpers return errors and their callers log once. */
#pragma once

#include <stdbool.h>

enum lxm_log_level {
	LXM_LOG_ERROR,
	LXM_LOG_WARN,
	LXM_LOG_INFO,
	LXM_LOG_DEBUG,
	_LXM_LOG_LEVEL_MAX,
	_LXM_LOG_LEVEL_INVALID = -1,
};

/* Parses "error", "warn"/"warning", "info", "debug"; returns _LXM_LOG_LEVEL_INVALID otherwise. */
enum lxm_log_level lxm_log_level_from_string(const char *s);
const char *lxm_log_level_to_string(enum lxm_log_level l);

void lxm_log_set_level(enum lxm_log_level l);
enum lxm_log_level lxm_log_get_level(void);

/* Also writes every line to this file (appending, O_CLOEXEC); NULL stops that. Returns -errno. */
int lxm_log_open_file(const char *path);
/* Whether lines go to stderr too (default true). */
void lxm_log_set_stderr(bool on);

void lxm_log(enum lxm_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) lxm_log(LXM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  lxm_log(LXM_LOG_WARN, __VA_ARGS__)
#define log_info(...)  lxm_log(LXM_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (lxm_log_get_level() >= LXM_LOG_DEBUG)                                          \
			lxm_log(LXM_LOG_DEBUG, __VA_ARGS__);                                       \
	} while (0)
