/* What every fuzz target defines. Each target is linked either with libFuzzer (which owns main())
 * or with replay.c, which runs the target over the checked-in corpus in the normal test run. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry point: must not crash, leak or hang for any input; returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The corpus directory under tests/fuzz/corpus/ that replay.c runs, e.g. "http". */
const char *lxm_fuzz_corpus_name(void);
