/* SPDX-License-Identifier: GPL-2.0-or-later
 * Shared by the libFuzzer harnesses: a finding is an abort() with a message. */
#ifndef NPP_FUZZ_COMMON_H
#define NPP_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "bpg_internal.h"

/* Harnesses decode at most this many pixels (512 x 512): the limit is refused before any
 * allocation, so larger claims exercise that path and keep every input fast. */
#define FUZZ_MAX_PIXELS (1u << 18)

#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz finding: " __VA_ARGS__);                                      \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* A status from a documented set, with a message whenever it is not OK. */
static inline void fuzz_check_status(int rc, char *err, const char *what)
{
    FUZZ_CHECK(rc >= NPP_BPG_OK && rc <= NPP_BPG_ERR_LIMIT, "%s: unknown status %d", what, rc);
    FUZZ_CHECK(rc == NPP_BPG_OK || err != NULL, "%s: status %d without a message", what, rc);
    FUZZ_CHECK(rc != NPP_BPG_OK || err == NULL, "%s: success with a message: %s", what, err);
    npp_bpg_free(err);
}

#endif
