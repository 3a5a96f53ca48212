/* SPDX-License-Identifier: GPL-2.0-or-later
 * x265's lambda tables, calibrated so that a QP means what it means to bpgenc.
 *
 * libbpg 0.9.8 bundles x265 build 75. At the same slice QP, Debian's x265 3.5 spends
 * 5-10 % more bits for 0.2-0.5 dB more RGB PSNR than that build, yet the two lie on the
 * same rate-PSNR curve: the newer x265 simply weighs rate less. With each lambda
 * taken from the next QP's entry (lambda x 2^(1/6), lambda^2 x 2^(1/3)), Debian's x265
 * lands within 4.4 % bpp and 0.11 dB of every lossy bpgenc vector in the conformance
 * set (4:2:0 at QP 28/34/41, 4:4:4, 10 bit), at an unchanged slice QP.
 *
 * x265 keeps these tables as process-wide globals (its own --lambda-file rewrites them
 * in place, for every encoder in the process), one set per bit-depth build. We shift
 * each set once, before the first encoder of that bit depth opens, so no encoder ever
 * reads a table while it changes. NPP_BPG_X265_LAMBDA=x265 keeps x265's own tables.
 *
 * Whether a set is shifted is read from the table itself, not only from our statics: a
 * second copy of this library in the process (NPP_BPG_LIBRARY naming a copy) shares
 * x265's tables and must not shift them again. x265's lambda for QP 12 is exactly
 * 2^(bit_depth - 8) (lambda = 2^((QP - 12) / 6), scaled for the sample range); shifted,
 * it holds QP 13's value, 2^(1/6) times that (to the table's four decimals). */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x265.h>

#include "bpg_internal.h"

#define X265_QP_TABLE 70 /* QP_MAX_MAX + 1 in x265 */

static pthread_mutex_t lambda_lock = PTHREAD_MUTEX_INITIALIZER;
static int lambda_state[3]; /* per 8/10/12-bit build: 0 = not yet decided, else state + 1 */

/* The tables live in the bit-depth build's C++ namespace (x265, x265_10bit, x265_12bit
 * in Debian's multilib library); found through the library x265_api_get lives in. */
static double *find_table(void *lib, int bit_depth, const char *name)
{
    const char *ns = bit_depth == 8 ? "4x265" : bit_depth == 10 ? "10x265_10bit" : "10x265_12bit";
    char sym[96];
    snprintf(sym, sizeof sym, "_ZN%s%zu%sE", ns, strlen(name), name);
    return dlsym(lib, sym);
}

enum { TABLE_X265, TABLE_SHIFTED, TABLE_UNKNOWN };

static int table_state(const double *lambda, int bit_depth)
{
    const double one = (double)(1 << (bit_depth - 8));
    if (lambda[12] == one)
        return TABLE_X265;
    if (fabs(lambda[12] - one * 1.122462048309373) < one * 1e-3)
        return TABLE_SHIFTED;
    return TABLE_UNKNOWN;
}

static int increasing(const double *t)
{
    for (int q = 0; q + 1 < X265_QP_TABLE; q++)
        if (!(t[q] > 0 && t[q] < t[q + 1]))
            return 0;
    return 1;
}

/* Every entry takes the next QP's value; the last one continues the geometric step. */
static void shift_one_qp(double *t)
{
    double last = t[X265_QP_TABLE - 1] * (t[X265_QP_TABLE - 1] / t[X265_QP_TABLE - 2]);
    memmove(t, t + 1, sizeof(double) * (X265_QP_TABLE - 1));
    t[X265_QP_TABLE - 1] = last;
}

/* *state = the tables x265 now uses (NPP_BPG_LAMBDA_*), or an error for a bad setting. */
static int calibrate(int bit_depth, int *state, char **errmsg)
{
    const char *want = getenv("NPP_BPG_X265_LAMBDA");
    if (want && *want && strcmp(want, "bpgenc") != 0) {
        if (strcmp(want, "x265") != 0)
            return bpg_fail_arg(errmsg, "NPP_BPG_X265_LAMBDA",
                            "bpg: NPP_BPG_X265_LAMBDA=%s is not understood; use bpgenc (the "
                            "default) or x265", want);
        *state = NPP_BPG_LAMBDA_X265;
        return NPP_BPG_OK;
    }
    *state = NPP_BPG_LAMBDA_X265_NOT_FOUND;
    Dl_info where;
    void *lib = NULL;
    if (dladdr((void *)x265_api_get, &where) && where.dli_fname)
        lib = dlopen(where.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (!lib)
        return NPP_BPG_OK;
    double *lambda = find_table(lib, bit_depth, "x265_lambda_tab");
    double *lambda2 = find_table(lib, bit_depth, "x265_lambda2_tab");
    if (lambda && lambda2 && increasing(lambda) && increasing(lambda2)) {
        int t = table_state(lambda, bit_depth);
        if (t == TABLE_X265) {
            shift_one_qp(lambda);
            shift_one_qp(lambda2);
        }
        if (t != TABLE_UNKNOWN)
            *state = NPP_BPG_LAMBDA_BPGENC;
    }
    dlclose(lib); /* RTLD_NOLOAD took a reference; x265 stays loaded through our link */
    return NPP_BPG_OK;
}

int bpg_x265_lambda(int bit_depth, int *state, char **errmsg)
{
    if (bit_depth != 8 && bit_depth != 10 && bit_depth != 12)
        return bpg_fail_arg(errmsg, "bit_depth",
                        "bpg: bit_depth=%d is not supported; use 8, 10 or 12", bit_depth);
    int k = (bit_depth - 8) / 2, rc = NPP_BPG_OK, decided = 0;
    pthread_mutex_lock(&lambda_lock);
    if (lambda_state[k])
        decided = lambda_state[k] - 1;
    else if ((rc = calibrate(bit_depth, &decided, errmsg)) == NPP_BPG_OK)
        lambda_state[k] = decided + 1; /* a bad setting is reported again next time */
    pthread_mutex_unlock(&lambda_lock);
    if (state && rc == NPP_BPG_OK)
        *state = decided;
    return rc;
}

NPP_API(int) npp_bpg_x265_lambda(int bit_depth, int *state, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    return bpg_x265_lambda(bit_depth, state, errmsg);
}
