/* SPDX-License-Identifier: GPL-2.0-or-later
 * Pixel arithmetic outside HEVC, bit-exact with libbpg 0.9.8:
 *   encoder: RGB -> YCbCr/YCgCo/RGB planes, chroma decimation, padding (FORMAT.md 12);
 *   decoder: cropping, chroma upsampling, conversion to 8/16-bit RGB   (FORMAT.md 11).
 * Section numbers below refer to FORMAT.md. Right shifts of negative ints are
 * arithmetic (gcc/clang on every supported target). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpg_internal.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline int cidx(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* (Kr, Kb) of the YCbCr colour spaces (11.6.1). */
static void kr_kb(int color_space, double *kr, double *kb)
{
    switch (color_space) {
    case NPP_BPG_CS_YCBCR_BT709:
        *kr = 0.2126, *kb = 0.0722;
        break;
    case NPP_BPG_CS_YCBCR_BT2020:
        *kr = 0.2627, *kb = 0.0593;
        break;
    default:
        *kr = 0.299, *kb = 0.114;
        break;
    }
}

/* ======================================================================================
 * Encoder (section 12), 8-bit input (I = 8).
 * ====================================================================================== */

typedef struct {
    int s, mout, rnd, center;
    int32_t cy[3], ccb[3], ccr[3];
    int32_t yone, yoff, c25, c50;
} enc_consts;

static void enc_init(enc_consts *c, int B, int color_space, int limited)
{
    const double Min = 255.0;
    c->s = 31 - B;
    c->mout = (1 << B) - 1;
    c->rnd = 1 << (c->s - 1);
    c->center = 1 << (B - 1);
    double two_s = (double)(1 << c->s);
    double mult = (double)c->mout * two_s / Min, mY = mult, mC = mult;
    if (limited) {
        mY = (double)(219 << (B - 8)) * two_s / Min;
        mC = (double)(224 << (B - 8)) * two_s / Min;
    }
    int32_t one = (int32_t)lrint(mult);
    c->yone = limited ? (int32_t)lrint(mY) : one;
    c->yoff = limited ? c->rnd + (16 << (c->s + B - 8)) : c->rnd;
    double kr, kb;
    kr_kb(color_space, &kr, &kb);
    double kg = (1 - kr) - kb;
    double m[9] = {kr, kg, kb,
                   (-0.5 * kr) / (1 - kb), (-0.5 * kg) / (1 - kb), 0.5,
                   0.5, (-0.5 * kg) / (1 - kr), (-0.5 * kb) / (1 - kr)};
    for (int k = 0; k < 3; k++) {
        c->cy[k] = (int32_t)lrint(m[k] * mY);
        c->ccb[k] = (int32_t)lrint(m[3 + k] * mC);
        c->ccr[k] = (int32_t)lrint(m[6 + k] * mC);
    }
    c->c25 = (int32_t)lrint(0.25 * mY);
    c->c50 = (int32_t)lrint(0.5 * mY);
}

/* 12.2: one pixel to the three 4:4:4 slots (or slot 0 only for gray). */
static inline void enc_pixel(const enc_consts *c, int cs, int gray_out, int R, int G, int Bv,
                             uint16_t out[3])
{
    const int s = c->s, M = c->mout;
    if (cs == NPP_BPG_CS_RGB) {
        out[0] = (uint16_t)((c->yone * G + c->yoff) >> s);
        out[1] = (uint16_t)((c->yone * Bv + c->yoff) >> s);
        out[2] = (uint16_t)((c->yone * R + c->yoff) >> s);
    } else if (cs == NPP_BPG_CS_YCGCO) {
        int32_t t1 = c->c50 * G, t2 = c->c25 * (R + Bv);
        out[0] = (uint16_t)clampi((t1 + t2 + c->yoff) >> s, 0, M);
        if (!gray_out) {
            out[1] = (uint16_t)clampi(((t1 - t2 + c->rnd) >> s) + c->center, 0, M);
            out[2] = (uint16_t)clampi(((c->c50 * (R - Bv) + c->rnd) >> s) + c->center, 0, M);
        }
    } else {
        out[0] = (uint16_t)clampi((c->cy[0] * R + c->cy[1] * G + c->cy[2] * Bv + c->yoff) >> s,
                                  0, M);
        if (!gray_out) {
            out[1] = (uint16_t)clampi(
                ((c->ccb[0] * R + c->ccb[1] * G + c->ccb[2] * Bv + c->rnd) >> s) + c->center, 0, M);
            out[2] = (uint16_t)clampi(
                ((c->ccr[0] * R + c->ccr[1] * G + c->ccr[2] * Bv + c->rnd) >> s) + c->center, 0, M);
        }
    }
}

/* One row of interleaved RGB to slot rows d0 (and d1, d2 unless gray_out). The colour
 * space is a loop-invariant argument, so each call site specialises after inlining. */
BPG_HOT
static void convert_row(const enc_consts *c, int cs, int gray_out, const uint8_t *row, int w,
                        uint16_t *d0, uint16_t *d1, uint16_t *d2)
{
    uint16_t v[3] = {0, 0, 0};
#define CONVERT_LOOP(CS, GRAY)                                                                  \
    for (int x = 0; x < w; x++) {                                                               \
        enc_pixel(c, CS, GRAY, row[3 * x], row[3 * x + 1], row[3 * x + 2], v);                  \
        d0[x] = v[0];                                                                           \
        if (!(GRAY)) {                                                                          \
            d1[x] = v[1];                                                                       \
            d2[x] = v[2];                                                                       \
        }                                                                                       \
    }
    if (gray_out) {
        if (cs == NPP_BPG_CS_YCGCO)
            CONVERT_LOOP(NPP_BPG_CS_YCGCO, 1)
        else
            CONVERT_LOOP(NPP_BPG_CS_YCBCR, 1)
    } else if (cs == NPP_BPG_CS_RGB) {
        CONVERT_LOOP(NPP_BPG_CS_RGB, 0)
    } else if (cs == NPP_BPG_CS_YCGCO) {
        CONVERT_LOOP(NPP_BPG_CS_YCGCO, 0)
    } else {
        CONVERT_LOOP(NPP_BPG_CS_YCBCR, 0)
    }
#undef CONVERT_LOOP
}

/* 12.3 decimation filters: taps summing to 128, offsets relative to 2i. The co-sited
 * D0 (offsets -7..7) = -1, 0, 4, 0, -11, 0, 40, 64, 40, 0, -11, 0, 4, 0, -1 is written out
 * in dec_h_row; the half-sample D1 (offsets -4..5) is also used vertically. */
static const int D1[10] = {2, -4, -8, 17, 57, 57, 17, -8, -4, 2};

/* Horizontal decimation of one row of n samples into out[0..ceil2(n)-1] (sums of the
 * taps, not yet rounded). `ext` is scratch of n + 16 samples: the row with 8 samples of
 * edge replication on each side, so the taps need no index clamping. */
BPG_HOT
static void dec_h_row(const uint16_t *row, int n, int cosited, uint16_t *ext, int32_t *out)
{
    for (int i = 0; i < 8; i++) {
        ext[i] = row[0];
        ext[n + 8 + i] = row[n - 1];
    }
    memcpy(ext + 8, row, sizeof(uint16_t) * (size_t)n);
    const uint16_t *e = ext + 8;
    const int cw = (n + 1) >> 1;
    /* one loop per siting, no branch inside: both vectorise */
    if (cosited) {
        for (int i = 0; i < cw; i++) {
            const uint16_t *q = e + 2 * i;
            out[i] = 64 * q[0] + 40 * (q[-1] + q[1]) - 11 * (q[-3] + q[3]) +
                     4 * (q[-5] + q[5]) - (q[-7] + q[7]);
        }
    } else {
        for (int i = 0; i < cw; i++) {
            const uint16_t *q = e + 2 * i;
            out[i] = 57 * (q[0] + q[1]) + 17 * (q[-1] + q[2]) - 8 * (q[-2] + q[3]) -
                     4 * (q[-3] + q[4]) + 2 * (q[-4] + q[5]);
        }
    }
}

/* Decimate full-resolution chroma `src` (w x h) into the top-left of `dst` (12.3). */
BPG_HOT
static int decimate(const uint16_t *src, int w, int h, int B, int pixel_format, bpg_plane *dst)
{
    int cw = (w + 1) >> 1, M = (1 << B) - 1;
    int cosited = pixel_format == NPP_BPG_FORMAT_420_VIDEO ||
                  pixel_format == NPP_BPG_FORMAT_422_VIDEO;
    int is422 = pixel_format == NPP_BPG_FORMAT_422 || pixel_format == NPP_BPG_FORMAT_422_VIDEO;
    uint16_t *ext = malloc(sizeof(uint16_t) * ((size_t)w + 16));
    int32_t *H = malloc(sizeof(int32_t) * (size_t)cw * (is422 ? 1 : h));
    if (!ext || !H) {
        free(ext);
        free(H);
        return NPP_BPG_ERR_NOMEM;
    }
    if (is422) {
        for (int y = 0; y < h; y++) {
            dec_h_row(src + (size_t)y * w, w, cosited, ext, H);
            for (int i = 0; i < cw; i++)
                dst->p[y * dst->stride + i] = (uint16_t)clampi((H[i] + 64) >> 7, 0, M);
        }
        free(ext);
        free(H);
        return NPP_BPG_OK;
    }
    /* 4:2:0: horizontal pass at extended precision, then vertical D1 pass. */
    int ch = (h + 1) >> 1;
    int hround = 1 << (B - 8), hshift = B - 7;
    for (int y = 0; y < h; y++) {
        int32_t *hr = H + (size_t)y * cw;
        dec_h_row(src + (size_t)y * w, w, cosited, ext, hr);
        for (int i = 0; i < cw; i++)
            hr[i] = (hr[i] + hround) >> hshift;
    }
    int vround = 1 << (20 - B), vshift = 21 - B;
    for (int r = 0; r < ch; r++) {
        const int32_t *rows[10];
        for (int k = -4; k <= 5; k++)
            rows[k + 4] = H + (size_t)cidx(2 * r + k, h) * cw;
        for (int i = 0; i < cw; i++) {
            int32_t sum = 0;
            for (int k = 0; k < 10; k++)
                sum += D1[k] * rows[k][i];
            dst->p[r * dst->stride + i] = (uint16_t)clampi((sum + vround) >> vshift, 0, M);
        }
    }
    free(ext);
    free(H);
    return NPP_BPG_OK;
}

/* 12.4: replicate the real wc x hc samples of `pl` over the whole plane. */
static void pad_plane(bpg_plane *pl, int wc, int hc)
{
    for (int y = 0; y < hc; y++)
        for (int x = wc; x < pl->w; x++)
            pl->p[y * pl->stride + x] = pl->p[y * pl->stride + wc - 1];
    for (int y = hc; y < pl->h; y++)
        memcpy(pl->p + y * pl->stride, pl->p + (hc - 1) * pl->stride, sizeof(uint16_t) * pl->w);
}

BPG_HOT
int bpg_prepare_planes(const uint8_t *pixels, int width, int height, int channels,
                       ptrdiff_t stride, int pixel_format, int bit_depth, int color_space,
                       int limited_range, bpg_plane planes[3], char **errmsg)
{
    const int w = width, h = height;
    const int W8 = (w + 7) & ~7, H8 = (h + 7) & ~7;
    const int gray_out = pixel_format == NPP_BPG_FORMAT_GRAY;
    /* A gray input is coded as gray with color space 0 (12.1); RGB -> gray keeps the luma
     * of the chosen YCbCr/YCgCo matrix. */
    const int cs = channels == 1 ? NPP_BPG_CS_YCBCR : color_space;
    const int ncomp = gray_out ? 1 : 3;
    int rc = NPP_BPG_ERR_NOMEM;
    uint16_t *full[3] = {NULL, NULL, NULL};
    memset(planes, 0, sizeof(bpg_plane) * 3);

    enc_consts c;
    enc_init(&c, bit_depth, cs, limited_range);

    int cwp = W8, chp = H8; /* padded chroma plane size */
    if (pixel_format != NPP_BPG_FORMAT_444 && !gray_out) {
        cwp = W8 / 2;
        if (pixel_format == NPP_BPG_FORMAT_420 || pixel_format == NPP_BPG_FORMAT_420_VIDEO)
            chp = H8 / 2;
    }
    for (int k = 0; k < ncomp; k++) {
        planes[k].w = k ? cwp : W8;
        planes[k].h = k ? chp : H8;
        planes[k].stride = planes[k].w;
        const size_t bytes = sizeof(uint16_t) * (size_t)planes[k].w * planes[k].h;
        planes[k].p = malloc(bytes + BPG_X265_INPUT_SLACK); /* these planes go to x265 */
        if (!planes[k].p)
            goto fail;
        memset((uint8_t *)planes[k].p + bytes, 0, BPG_X265_INPUT_SLACK);
    }
    int subsampled = !gray_out && pixel_format != NPP_BPG_FORMAT_444;
    if (subsampled)
        for (int k = 1; k < 3; k++)
            if (!(full[k] = malloc(sizeof(uint16_t) * (size_t)w * h)))
                goto fail;

    /* 12.2: conversion, luma (and 4:4:4 chroma) straight into the padded planes. */
    for (int y = 0; y < h; y++) {
        const uint8_t *row = pixels + y * stride;
        uint16_t *d0 = planes[0].p + y * planes[0].stride;
        if (channels == 1) {
            for (int x = 0; x < w; x++)
                d0[x] = (uint16_t)((c.yone * row[x] + c.yoff) >> c.s);
            continue;
        }
        uint16_t *d1 = NULL, *d2 = NULL;
        if (!gray_out) {
            d1 = subsampled ? full[1] + (size_t)y * w : planes[1].p + y * planes[1].stride;
            d2 = subsampled ? full[2] + (size_t)y * w : planes[2].p + y * planes[2].stride;
        }
        convert_row(&c, cs, gray_out, row, w, d0, d1, d2);
    }
    pad_plane(&planes[0], w, h);
    if (!gray_out) {
        int wc = w, hc = h;
        if (subsampled) {
            wc = (w + 1) >> 1;
            if (chp != H8)
                hc = (h + 1) >> 1;
            for (int k = 1; k < 3; k++)
                if (decimate(full[k], w, h, bit_depth, pixel_format, &planes[k]))
                    goto fail;
        }
        pad_plane(&planes[1], wc, hc);
        pad_plane(&planes[2], wc, hc);
    }
    free(full[1]);
    free(full[2]);
    return NPP_BPG_OK;

fail:
    free(full[1]);
    free(full[2]);
    for (int k = 0; k < 3; k++) {
        free(planes[k].p);
        planes[k].p = NULL;
    }
    return bpg_fail(errmsg, rc, "bpg: out of memory preparing a %dx%d picture", w, h);
}

/* ======================================================================================
 * Decoder (section 11).
 * ====================================================================================== */

/* 11.3: half-sample taps for even / odd output positions (offsets -3..3), used by the
 * vertical pass; up_h_row spells out the same taps (and the co-sited odd taps
 * -1, 4, -11, 40, 40, -11, 4, -1 on offsets -3..4) for the horizontal pass. */
static const int HS_EVEN[7] = {2, -6, 18, 57, -10, 4, -1};
static const int HS_ODD[7] = {-1, 4, -10, 57, 18, -6, 2};

/* Copy the cropped w x h top-left part of a decoded plane to uint16 samples (11.2). */
static int load_plane(const bpg_src_plane *src, int w, int h, int B, uint16_t **out)
{
    uint16_t *p = malloc(sizeof(uint16_t) * (size_t)w * h);
    if (!p)
        return NPP_BPG_ERR_NOMEM;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src->p + y * src->stride_bytes;
        uint16_t *d = p + (size_t)y * w;
        if (B == 8)
            for (int x = 0; x < w; x++)
                d[x] = row[x];
        else
            memcpy(d, row, sizeof(uint16_t) * (size_t)w);
    }
    *out = p;
    return NPP_BPG_OK;
}

/* The 11.3 taps spelled out for the horizontal pass: even / odd outputs of the
 * half-sample filter, and the odd outputs of the co-sited one, around input q[0]. */
static inline int32_t hs_even(const int32_t *q)
{
    return 2 * q[-3] - 6 * q[-2] + 18 * q[-1] + 57 * q[0] - 10 * q[1] + 4 * q[2] - q[3];
}

static inline int32_t hs_odd(const int32_t *q)
{
    return -q[-3] + 4 * q[-2] - 10 * q[-1] + 57 * q[0] + 18 * q[1] - 6 * q[2] + 2 * q[3];
}

static inline int32_t cs_odd(const int32_t *q)
{
    return -(q[-3] + q[4]) + 4 * (q[-2] + q[3]) - 11 * (q[-1] + q[2]) + 40 * (q[0] + q[1]);
}

/* Horizontal upsampling of one row of n chroma values (already at the precision the
 * caller wants) to w outputs, with the taps of 11.3. `e` points 4 entries into a buffer
 * holding the row with 4 replicated samples on each side. `round`/`shift` finish the
 * filtered (odd/half-sample) outputs; co-sited even outputs use `r0`/`s0`. */
static inline void up_h_row(const int32_t *e, int w, int cosited, int round, int shift,
                            int r0, int s0, int M, uint16_t *u)
{
    /* One (even, odd) output pair per input position j, branch-free (it vectorises). */
    const int pairs = w >> 1;
    if (!cosited) {
        for (int j = 0; j < pairs; j++) {
            u[2 * j] = (uint16_t)clampi((hs_even(e + j) + round) >> shift, 0, M);
            u[2 * j + 1] = (uint16_t)clampi((hs_odd(e + j) + round) >> shift, 0, M);
        }
        if (w & 1)
            u[w - 1] = (uint16_t)clampi((hs_even(e + pairs) + round) >> shift, 0, M);
    } else {
        for (int j = 0; j < pairs; j++) {
            u[2 * j] = (uint16_t)clampi((e[j] + r0) >> s0, 0, M);
            u[2 * j + 1] = (uint16_t)clampi((cs_odd(e + j) + round) >> shift, 0, M);
        }
        if (w & 1)
            u[w - 1] = (uint16_t)clampi((e[pairs] + r0) >> s0, 0, M);
    }
}

static inline void pad_row(int32_t *ext, int n)
{
    for (int i = 1; i <= 4; i++) {
        ext[4 - i] = ext[4];
        ext[4 + n - 1 + i] = ext[4 + n - 1];
    }
}

/* 11.4: 4:2:0 -> full resolution, vertical pass first at extended precision. */
BPG_HOT
static int upsample_420(const uint16_t *C, int cw, int ch, int w, int h, int B, int cosited,
                        uint16_t *U)
{
    int32_t *ext = malloc(sizeof(int32_t) * ((size_t)cw + 8));
    if (!ext)
        return NPP_BPG_ERR_NOMEM;
    const int sv = B - 8, rv = sv > 0 ? 1 << (sv - 1) : 0;
    const int sh = 20 - B, rh = 1 << (sh - 1);
    const int s0 = 14 - B, r0 = s0 > 0 ? 1 << (s0 - 1) : 0;
    const int M = (1 << B) - 1;
    int32_t *T = ext + 4;
    for (int y = 0; y < h; y++) {
        const int i = y >> 1;
        const int *V = (y & 1) ? HS_ODD : HS_EVEN;
        const uint16_t *rows[7];
        for (int k = -3; k <= 3; k++)
            rows[k + 3] = C + (size_t)cidx(i + k, ch) * cw;
        for (int j = 0; j < cw; j++) {
            int32_t sum = 0;
            for (int k = 0; k < 7; k++)
                sum += V[k] * rows[k][j];
            T[j] = (sum + rv) >> sv;
        }
        pad_row(ext, cw);
        up_h_row(T, w, cosited, rh, sh, r0, s0, M, U + (size_t)y * w);
    }
    free(ext);
    return NPP_BPG_OK;
}

/* 11.5: 4:2:2 -> full resolution, horizontal only at coded precision. */
BPG_HOT
static int upsample_422(const uint16_t *C, int cw, int w, int h, int B, int cosited,
                        uint16_t *U)
{
    int32_t *ext = malloc(sizeof(int32_t) * ((size_t)cw + 8));
    if (!ext)
        return NPP_BPG_ERR_NOMEM;
    const int M = (1 << B) - 1;
    for (int y = 0; y < h; y++) {
        const uint16_t *c = C + (size_t)y * cw;
        for (int j = 0; j < cw; j++)
            ext[4 + j] = c[j];
        pad_row(ext, cw);
        /* co-sited even outputs are exact copies: (v << 0 + 0) >> 0 */
        up_h_row(ext + 4, w, cosited, 32, 6, 0, 0, M, U + (size_t)y * w);
    }
    free(ext);
    return NPP_BPG_OK;
}

typedef struct {
    int s, mout, center;
    int32_t yone, yoff, crcr, cgcb, cgcr, cbcb;
} dec_consts;

static void dec_init(dec_consts *c, int B, int O, int color_space, int limited)
{
    c->s = 30 - O;
    c->mout = (1 << O) - 1;
    c->center = 1 << (B - 1);
    const int32_t rnd = 1 << (c->s - 1);
    const double two_s = (double)(1 << c->s), Min = (double)((1 << B) - 1);
    double mult = (double)c->mout * two_s / Min, mY = mult, mC = mult;
    if (limited) {
        mY = (double)c->mout * two_s / (double)(219 << (B - 8));
        mC = (double)c->mout * two_s / (double)(224 << (B - 8));
    }
    c->yone = (int32_t)lrint(mY);
    c->yoff = limited ? rnd - (16 << (B - 8)) * c->yone : rnd;
    double kr, kb;
    kr_kb(color_space, &kr, &kb);
    c->crcr = (int32_t)lrint((2 * (1 - kr)) * mC);
    c->cgcb = (int32_t)lrint(((2 * kb) * (1 - kb)) / ((1 - kb) - kr) * mC);
    c->cgcr = (int32_t)lrint(((2 * kr) * (1 - kr)) / ((1 - kb) - kr) * mC);
    c->cbcb = (int32_t)lrint((2 * (1 - kb)) * mC);
}

/* 11.6.5: the reference computes in signed 32 bits and wraps; the callers compute in
 * uint32_t (wrapping is defined there and gives the same bits), then shift as int32. */
static inline int fin(uint32_t v, int s, int M)
{
    return clampi((int32_t)v >> s, 0, M);
}

BPG_HOT
int bpg_planes_to_rgb(const bpg_src_plane planes[3], int width, int height, int pixel_format,
                      int bit_depth, int color_space, int limited_range, int out_bits,
                      uint8_t *out, char **errmsg)
{
    const int w = width, h = height, B = bit_depth;
    const int gray = pixel_format == NPP_BPG_FORMAT_GRAY;
    uint16_t *Y = NULL, *C[3] = {NULL, NULL, NULL}, *U[3] = {NULL, NULL, NULL};
    int rc = NPP_BPG_ERR_NOMEM;
    if (load_plane(&planes[0], w, h, B, &Y))
        goto done;
    if (!gray) {
        int cw = w, ch = h;
        if (pixel_format != NPP_BPG_FORMAT_444) {
            cw = (w + 1) >> 1;
            if (pixel_format == NPP_BPG_FORMAT_420 || pixel_format == NPP_BPG_FORMAT_420_VIDEO)
                ch = (h + 1) >> 1;
        }
        int cosited = pixel_format == NPP_BPG_FORMAT_420_VIDEO ||
                      pixel_format == NPP_BPG_FORMAT_422_VIDEO;
        for (int k = 1; k < 3; k++) {
            if (load_plane(&planes[k], cw, ch, B, &C[k]))
                goto done;
            if (pixel_format == NPP_BPG_FORMAT_444) {
                U[k] = C[k];
                C[k] = NULL;
                continue;
            }
            if (!(U[k] = malloc(sizeof(uint16_t) * (size_t)w * h)))
                goto done;
            if (ch != h) {
                if (upsample_420(C[k], cw, ch, w, h, B, cosited, U[k]))
                    goto done;
            } else if (upsample_422(C[k], cw, w, h, B, cosited, U[k])) {
                goto done;
            }
        }
    }

    dec_consts c;
    dec_init(&c, B, out_bits, color_space, limited_range);
    const int s = c.s, M = c.mout;
    const uint32_t yone = (uint32_t)c.yone, yoff = (uint32_t)c.yoff, center = (uint32_t)c.center;
    const uint32_t crcr = (uint32_t)c.crcr, cgcb = (uint32_t)c.cgcb, cgcr = (uint32_t)c.cgcr,
                   cbcb = (uint32_t)c.cbcb;
    const int kind = gray ? 0 : color_space == NPP_BPG_CS_RGB ? 1
                            : color_space == NPP_BPG_CS_YCGCO ? 2 : 3;
    /* Loop-invariant colour space and output size: one specialised loop each. */
#define CONVERT(KIND, OUT_T)                                                                    \
    for (size_t i = 0, n = (size_t)w * h; i < n; i++) {                                         \
        uint32_t yv = Y[i], r, g, b;                                                            \
        if ((KIND) == 0) {                                                                      \
            r = g = b = yv * yone + yoff;                                                       \
        } else if ((KIND) == 1) {                                                               \
            g = yv * yone + yoff;                                                               \
            b = (uint32_t)U[1][i] * yone + yoff;                                                \
            r = (uint32_t)U[2][i] * yone + yoff;                                                \
        } else if ((KIND) == 2) {                                                               \
            uint32_t cg = (uint32_t)U[1][i] - center, co = (uint32_t)U[2][i] - center;          \
            r = (yv - cg + co) * yone + yoff;                                                   \
            g = (yv + cg) * yone + yoff;                                                        \
            b = (yv - cg - co) * yone + yoff;                                                   \
        } else {                                                                                \
            uint32_t cb = (uint32_t)U[1][i] - center, cr = (uint32_t)U[2][i] - center;          \
            uint32_t yy = yv * yone + yoff;                                                     \
            r = yy + crcr * cr;                                                                 \
            g = yy - cgcb * cb - cgcr * cr;                                                     \
            b = yy + cbcb * cb;                                                                 \
        }                                                                                       \
        OUT_T *o = (OUT_T *)out + 3 * i;                                                        \
        o[0] = (OUT_T)fin(r, s, M);                                                             \
        o[1] = (OUT_T)fin(g, s, M);                                                             \
        o[2] = (OUT_T)fin(b, s, M);                                                             \
    }
#define CONVERT_KIND(OUT_T)                                                                     \
    switch (kind) {                                                                             \
    case 0: CONVERT(0, OUT_T) break;                                                            \
    case 1: CONVERT(1, OUT_T) break;                                                            \
    case 2: CONVERT(2, OUT_T) break;                                                            \
    default: CONVERT(3, OUT_T) break;                                                           \
    }
    if (out_bits == 8) {
        CONVERT_KIND(uint8_t)
    } else {
        CONVERT_KIND(uint16_t)
    }
#undef CONVERT_KIND
#undef CONVERT
    rc = NPP_BPG_OK;
done:
    free(Y);
    for (int k = 1; k < 3; k++) {
        free(C[k]);
        free(U[k]);
    }
    if (rc)
        return bpg_fail(errmsg, rc, "bpg: out of memory converting a %dx%d picture", w, h);
    return rc;
}
