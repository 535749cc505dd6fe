/* Scope-bound cleanup: variables declared with these attributes release their resource when they
 * go out of scope. Ownership moves with TAKE_PTR / TAKE_FD. Every destructor accepts NULL / -1. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void lxm_freep(void *p)
{
	free(*(void **)p);
}

/* close() that keeps errno, so a cleanup on an error path never masks the real cause. */
static inline void lxm_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void lxm_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

/* Frees a NULL-terminated array of strings and the array. */
static inline void lxm_strv_free(char **v)
{
	if (!v)
		return;
	for (char **s = v; *s; s++)
		free(*s);
	free(v);
}

static inline void lxm_strv_freep(char ***v)
{
	lxm_strv_free(*v);
}

static inline void lxm_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_free_	   _cleanup_(lxm_freep)
#define _cleanup_closedir_ _cleanup_(lxm_closedirp)
#define _cleanup_close_	   _cleanup_(lxm_closep)
#define _cleanup_fclose_   _cleanup_(lxm_fclosep)
#define _cleanup_strv_	   _cleanup_(lxm_strv_freep)

/* Declares a cleanup helper name##p for a library type with its own destructor. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
	static inline void func##p(type *p)                                                        \
	{                                                                                          \
		if (*p)                                                                            \
			func(*p);                                                                  \
	}

/* Hands a pointer on and leaves NULL behind, so the local cleanup does nothing. */
#define TAKE_PTR(ptr)                                                                              \
	({                                                                                         \
		__typeof__(ptr) *_pptr_ = &(ptr);                                                  \
		__typeof__(ptr) _ptr_ = *_pptr_;                                                   \
		*_pptr_ = NULL;                                                                    \
		_ptr_;                                                                             \
	})

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int *_pfd_ = &(fd);                                                                \
		int _fd_ = *_pfd_;                                                                 \
		*_pfd_ = -1;                                                                       \
		_fd_;                                                                              \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
