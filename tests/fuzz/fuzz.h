/* What every libFuzzer target of tests/fuzz shares: the entry point's
 * prototype (our warnings want one) and CHECK, which turns a broken
 * property into a crash that libFuzzer reports and saves, with the
 * condition and the line. */
#ifndef CRP_FUZZ_H
#define CRP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* libFuzzer calls this once per input. The input is read-only and only
 * valid during the call; libFuzzer gives it an allocation of exactly `size`
 * bytes, so AddressSanitizer catches a read one byte past its end. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called once before the first input (optional). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property of the code under test; unlike assert() it also holds in a
 * build with NDEBUG. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
