/* SPDX-License-Identifier: GPL-2.0-or-later
 * Byte buffers, bit readers/writers, ue7 integers and NAL escaping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpg_internal.h"

static void set_message(char **errmsg, const char *argument, const char *fmt, va_list ap)
{
    if (!errmsg || *errmsg)
        return;
    char tmp[512];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    size_t n = strlen(tmp), a = argument ? strlen(argument) : 0;
    char *buf = malloc(n + 1 + a + 1); /* NULL on OOM: the caller still has the code */
    if (buf) {
        memcpy(buf, tmp, n + 1);
        memcpy(buf + n + 1, argument ? argument : "", a + 1);
    }
    *errmsg = buf;
}

int bpg_fail(char **errmsg, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(errmsg, NULL, fmt, ap);
    va_end(ap);
    return code;
}

int bpg_fail_arg(char **errmsg, const char *argument, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(errmsg, argument, fmt, ap);
    va_end(ap);
    return NPP_BPG_ERR_ARGUMENT;
}

/* ---- bpg_buf ---------------------------------------------------------------------- */

static int buf_reserve(bpg_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_put(bpg_buf *b, const void *src, size_t n)
{
    if (n == 0 || buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

void buf_byte(bpg_buf *b, uint8_t v)
{
    if (buf_reserve(b, 1))
        return;
    b->data[b->len++] = v;
}

void buf_ue7(bpg_buf *b, uint32_t v)
{
    int n = 1;
    while (n < 5 && (v >> (7 * n)) != 0)
        n++;
    for (int i = n - 1; i >= 0; i--)
        buf_byte(b, (uint8_t)(((v >> (7 * i)) & 0x7f) | (i ? 0x80 : 0)));
}

void buf_free(bpg_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- bits -------------------------------------------------------------------------- */

void br_init(bpg_bitreader *br, const uint8_t *p, size_t nbytes)
{
    br->p = p;
    br->nbits = nbytes * 8;
    br->pos = 0;
    br->overrun = 0;
}

uint32_t br_u(bpg_bitreader *br, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (br->pos >= br->nbits) {
            br->overrun = 1;
            return 0;
        }
        v = (v << 1) | ((br->p[br->pos >> 3] >> (7 - (br->pos & 7))) & 1);
        br->pos++;
    }
    return v;
}

uint32_t br_ue(bpg_bitreader *br)
{
    int zeros = 0;
    while (!br_u(br, 1)) {
        if (br->overrun || ++zeros > 31) {
            br->overrun = 1;
            return 0;
        }
    }
    if (zeros == 0)
        return 0;
    return (uint32_t)((1ull << zeros) - 1 + br_u(br, zeros));
}

void bw_u(bpg_bitwriter *bw, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        bw->acc = (bw->acc << 1) | ((v >> i) & 1);
        if (++bw->nacc == 8) {
            buf_byte(bw->out, (uint8_t)bw->acc);
            bw->acc = 0;
            bw->nacc = 0;
        }
    }
}

void bw_ue(bpg_bitwriter *bw, uint32_t v)
{
    uint64_t x = (uint64_t)v + 1;
    int len = 0;
    while ((x >> (len + 1)) != 0)
        len++;
    bw_u(bw, 0, len);
    bw_u(bw, 1, 1);
    bw_u(bw, (uint32_t)(x & ((1ull << len) - 1)), len);
}

void bw_align_zero(bpg_bitwriter *bw)
{
    if (bw->nacc)
        bw_u(bw, 0, 8 - bw->nacc);
}

void bw_trailing(bpg_bitwriter *bw)
{
    bw_u(bw, 1, 1);
    bw_align_zero(bw);
}

/* ---- ue7 ---------------------------------------------------------------------------- */

int read_ue7(const uint8_t *p, size_t len, size_t *pos, uint32_t *v)
{
    uint64_t acc = 0;
    for (int i = 0; i < 5; i++) {
        if (*pos >= len)
            return -1;
        uint8_t c = p[(*pos)++];
        if (i == 0 && c == 0x80)
            return -1; /* non-minimal encoding, as libbpg rejects it */
        acc = (acc << 7) | (c & 0x7f);
        if (!(c & 0x80)) {
            if (acc > 0xffffffffull)
                return -1;
            *v = (uint32_t)acc;
            return 0;
        }
    }
    return -1;
}

/* ---- NAL escaping -------------------------------------------------------------------- */

size_t rbsp_unescape(const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t o = 0;
    int zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (zeros >= 2 && src[i] == 3) {
            zeros = 0;
            continue;
        }
        dst[o++] = src[i];
        zeros = src[i] == 0 ? zeros + 1 : 0;
    }
    return o;
}

void nal_put_escaped(bpg_buf *b, const uint8_t *rbsp, size_t n)
{
    int zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (zeros >= 2 && rbsp[i] <= 3) {
            buf_byte(b, 3);
            zeros = 0;
        }
        buf_byte(b, rbsp[i]);
        zeros = rbsp[i] == 0 ? zeros + 1 : 0;
    }
    if (n && rbsp[n - 1] == 0) /* a NAL unit never ends in 0x00 (cabac_zero_words) */
        buf_byte(b, 3);
}
