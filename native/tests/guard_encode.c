/* SPDX-License-Identifier: GPL-2.0-or-later
 * Encodes small pictures at 8, 10 and 12 bits through libnpp_bpg, meant to run under
 * Electric Fence (LD_PRELOAD=libefence.so: every allocation ends at a guard page). x265 is
 * not instrumented, so ASan cannot see it read past the planes we hand it; the guard page
 * turns such a read into a SEGV (tests/test_fuzz_regressions.py). */
#include <stdio.h>
#include <stdlib.h>

#include "npp_bpg.h"

int main(void)
{
    int failures = 0;
    for (int depth = 8; depth <= 12; depth += 2)
        for (int w = 9; w <= 41; w += 8)
            for (int h = 9; h <= 20; h += 11) {
                unsigned char *px = malloc((size_t)w * h * 3);
                for (int i = 0; i < w * h * 3; i++)
                    px[i] = (unsigned char)(i * 37);
                npp_bpg_encode_params p;
                npp_bpg_default_params(&p);
                p.bit_depth = depth;
                p.level = NPP_BPG_LEVEL_FAST;
                p.qp = 40;
                unsigned char *out = NULL;
                size_t n = 0;
                char *err = NULL;
                if (npp_bpg_encode(px, w, h, 3, (ptrdiff_t)w * 3, &p, &out, &n, &err)) {
                    printf("%dx%d at %d bits: %s\n", w, h, depth, err ? err : "failed");
                    failures++;
                }
                npp_bpg_free(out);
                npp_bpg_free(err);
                free(px);
            }
    printf("%d failures\n", failures);
    return failures != 0;
}
