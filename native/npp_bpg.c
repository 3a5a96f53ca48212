/* SPDX-License-Identifier: GPL-2.0-or-later
 * Public entry points: version, header info, decoding on libde265, free.
 * (Encoding lives in bpg_encode.c.) */
#include <libde265/de265.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x265.h>

#include "bpg_internal.h"

#define STR2(x) #x
#define STR(x) STR2(x)

NPP_API(const char *) npp_bpg_version(void)
{
    return NPP_BPG_VERSION " (x265 build " STR(X265_BUILD) ", libde265 " LIBDE265_VERSION ")";
}

NPP_API(int) npp_bpg_abi(void) { return NPP_BPG_ABI; }

NPP_API(void) npp_bpg_free(void *ptr) { free(ptr); }

NPP_API(const char *) npp_bpg_error_argument(const char *errmsg)
{
    if (!errmsg)
        return NULL;
    const char *argument = errmsg + strlen(errmsg) + 1;
    return *argument ? argument : NULL;
}

NPP_API(int) npp_bpg_get_info(const uint8_t *data, size_t len, npp_bpg_info *info, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!info)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL info pointer");
    return bpg_parse_header(data, len, info, NULL, errmsg);
}

/* libde265 builds lookup tables on the first de265_init() and frees them when its
 * reference count drops to zero. Holding one reference for the life of the process
 * avoids rebuilding them on every decode; de265_init itself is mutex-protected. */
static pthread_once_t de265_once = PTHREAD_ONCE_INIT;
static void de265_keep_initialised(void) { (void)de265_init(); }

typedef struct {
    const uint8_t *p;
    size_t n;
} nal_ref;

/* Split the stored NAL data (FORMAT 5): the first NAL starts at offset 0, later ones
 * follow 00 00 01 start codes; zero bytes before a start code belong to it. */
static int split_nals(const uint8_t *d, size_t n, nal_ref **out, size_t *count, char **errmsg)
{
    size_t cap = 8, k = 0, start = 0;
    nal_ref *v = malloc(cap * sizeof *v);
    if (!v)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
    for (size_t i = 0;; i++) {
        int at_sc = i + 2 < n && d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1;
        if (!at_sc && i < n)
            continue;
        size_t end = i < n ? i : n;
        while (end > start && d[end - 1] == 0)
            end--;
        if (end > start) {
            if (k == cap) {
                nal_ref *nv = realloc(v, 2 * cap * sizeof *v);
                if (!nv) {
                    free(v);
                    return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
                }
                v = nv;
                cap *= 2;
            }
            v[k].p = d + start;
            v[k].n = end - start;
            k++;
        }
        if (i >= n)
            break;
        start = i + 3;
        i += 2;
    }
    *out = v;
    *count = k;
    return NPP_BPG_OK;
}

static int push_buf_nal(de265_decoder_context *ctx, bpg_buf *b)
{
    return b->oom || de265_push_NAL(ctx, b->data, (int)b->len, 0, NULL) != DE265_OK;
}

static int de265_fail(char **errmsg, de265_error e, const char *what)
{
    int code = e == DE265_ERROR_OUT_OF_MEMORY ? NPP_BPG_ERR_NOMEM : NPP_BPG_ERR_CORRUPT;
    return bpg_fail(errmsg, code, "bpg: corrupt HEVC data (%s: libde265 %d: %s)", what, (int)e,
                    de265_get_error_text(e));
}

/* libde265 does not report CTBs it never decoded (a slice cut short can end "cleanly").
 * We therefore allocate its pictures ourselves, pre-fill luma with a sentinel that a
 * decoded picture cannot (B > 8: 0xffff) or will essentially never (B = 8: a hash of
 * the position) contain, and afterwards require every CTB to have been overwritten. */
typedef struct {
    int bit_depth, sub_w, sub_h, nplanes;
    int own_stream; /* BPG_DECODE_OWN_STREAM: no sentinels, no completeness scan */
} alloc_ctx;

static inline uint8_t sentinel8(int x, int y)
{
    uint32_t h = (uint32_t)x * 0x9E3779B1u ^ (uint32_t)y * 0x85EBCA77u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    return (uint8_t)(h >> 24);
}

static void release_buffer(de265_decoder_context *ctx, struct de265_image *img, void *ud)
{
    (void)ctx;
    (void)ud;
    for (int c = 0; c < 3; c++)
        free(de265_get_image_plane_user_data(img, c));
}

static int get_buffer(de265_decoder_context *ctx, struct de265_image_spec *spec,
                      struct de265_image *img, void *ud)
{
    (void)ctx;
    const alloc_ctx *a = ud;
    const int bps = a->bit_depth > 8 ? 2 : 1, align = spec->alignment > 0 ? spec->alignment : 16;
    for (int c = 0; c < 3; c++) {
        if (c >= a->nplanes) {
            de265_set_image_plane(img, c, NULL, 0, NULL);
            continue;
        }
        int w = c ? spec->width / a->sub_w : spec->width;
        int h = c ? spec->height / a->sub_h : spec->height;
        int stride = (w + align - 1) / align * align; /* in samples, as libde265 expects */
        void *p = NULL;
        if (w <= 0 || h <= 0 || posix_memalign(&p, 64, (size_t)stride * h * bps)) {
            for (int k = 0; k < c; k++) {
                free(de265_get_image_plane_user_data(img, k));
                de265_set_image_plane(img, k, NULL, 0, NULL);
            }
            return 0;
        }
        /* Sentinels reveal CTBs a cut-short stream leaves undecoded; our own streams
         * (BPG_DECODE_OWN_STREAM) decode every CTB, so their planes are left as they are. */
        if (!a->own_stream && c > 0)
            memset(p, 0, (size_t)stride * h * bps);
        else if (!a->own_stream && bps == 2)
            memset(p, 0xff, (size_t)stride * h * 2);
        else if (!a->own_stream)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < stride; x++)
                    ((uint8_t *)p)[(size_t)y * stride + x] = sentinel8(x, y);
        /* de265_set_image_plane takes the stride in bytes and divides it by the bytes per
         * sample of the image's bit depth as libde265 has it at this point, which 1.0.11
         * has not always updated for this picture yet (a stale 8 or 10): pass our stride
         * in samples times that same divisor, so the stride libde265 keeps is always ours.
         * (Passing samples alone halved it for 10/12-bit pictures: rows overlapped and
         * decoded to garbage; found by fuzz_encode through the MD5 picture hash.) */
        const int div = (de265_get_bits_per_pixel(img, c) + 7) / 8;
        de265_set_image_plane(img, c, p, stride * (div > 0 ? div : 1), p);
    }
    return 1;
}

/* 0 when every CTB of the luma plane was written by the decoder. */
static int find_undecoded_ctb(const struct de265_image *img, int bit_depth, int ctb, int *cx,
                              int *cy)
{
    int stride = 0;
    const uint8_t *p = de265_get_image_plane(img, 0, &stride);
    const int w = de265_get_image_width(img, 0), h = de265_get_image_height(img, 0);
    for (int y0 = 0; y0 < h; y0 += ctb)
        for (int x0 = 0; x0 < w; x0 += ctb) {
            int same = 0, area = 0;
            for (int y = y0; y < y0 + ctb && y < h; y++)
                for (int x = x0; x < x0 + ctb && x < w; x++, area++) {
                    if (bit_depth > 8)
                        same += ((const uint16_t *)(p + (size_t)y * stride))[x] == 0xffff;
                    else
                        same += p[(size_t)y * stride + x] == sentinel8(x, y);
                }
            if (2 * same > area) {
                *cx = x0 / ctb;
                *cy = y0 / ctb;
                return 1;
            }
        }
    return 0;
}

/* SEI NAL units are not checked by libde265 when cut short: check their framing
 * (sei_message()* then rbsp_trailing_bits) ourselves. */
static int sei_is_well_formed(const uint8_t *nal, size_t n)
{
    uint8_t *r = malloc(n);
    if (!r)
        return 0;
    size_t len = rbsp_unescape(nal + 2, n - 2, r), pos = 0;
    int ok = 0;
    for (;;) {
        if (len - pos == 1 && r[pos] == 0x80) {
            ok = 1;
            break;
        }
        size_t field[2] = {0, 0}; /* payloadType, payloadSize */
        for (int f = 0; f < 2; f++) {
            while (pos < len && r[pos] == 0xff)
                field[f] += 255, pos++;
            if (pos >= len)
                goto done;
            field[f] += r[pos++];
        }
        if (field[1] > len - pos)
            break;
        pos += field[1];
        if (pos >= len)
            break;
    }
done:
    free(r);
    return ok;
}

/* One libde265 pass over the colour NAL units. On success *pctx holds the decoder (free
 * it with de265_free_decoder) and *pimg its first picture, checked.
 * `tail` > 0 appends that many 0xA5 bytes to every slice NAL unit (see verify_pass).
 * `scan`: decode into our sentinel-filled planes (without SAO if the stream has it) and
 * require every CTB to have been decoded. */
static int de265_pass(const nal_ref *nals, size_t nnal, const npp_bpg_info *info,
                      const bpg_hevc_header *hh, alloc_ctx *actx, size_t tail, int scan,
                      de265_decoder_context **pctx, const struct de265_image **pimg,
                      char **errmsg)
{
    int rc = NPP_BPG_OK;
    uint8_t *ext = NULL;
    *pimg = NULL;
    pthread_once(&de265_once, de265_keep_initialised);
    de265_decoder_context *ctx = *pctx = de265_new_decoder();
    if (!ctx)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: cannot create a libde265 decoder");
    /* libde265 (1.0.11, one thread) decodes into our get_buffer's planes only when SAO is
     * off (decctx.cc: isOutputImage); with SAO it allocates them itself, unfilled. A scan
     * of a stream with SAO therefore decodes without it, and so cannot check the picture
     * hash, which is of the filtered picture (the stream's own pass checks it). */
    const int drop_sao = scan && hh->sao;
    de265_set_parameter_bool(ctx, DE265_DECODER_PARAM_BOOL_SEI_CHECK_HASH, !drop_sao);
    /* A picture with decoding errors is not output: we report it instead. */
    de265_set_parameter_bool(ctx, DE265_DECODER_PARAM_SUPPRESS_FAULTY_PICTURES, 1);
    if (drop_sao)
        de265_set_parameter_bool(ctx, DE265_DECODER_PARAM_DISABLE_SAO, 1);
    struct de265_image_allocation alloc = {get_buffer, release_buffer};
    de265_set_image_allocation_functions(ctx, &alloc, actx);

    const int cfi = bpg_chroma_format_idc(info->pixel_format);
    bpg_buf ps = {0};
    bpg_write_vps(&ps, cfi, info->bit_depth);
    int bad = push_buf_nal(ctx, &ps);
    ps.len = 0;
    bpg_write_sps(&ps, hh, cfi, info->width, info->height, info->bit_depth);
    bad |= push_buf_nal(ctx, &ps);
    buf_free(&ps);
    if (bad)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory feeding libde265");
    int frames = 0;
    for (size_t i = 0; i < nnal; i++) {
        const uint8_t *p = nals[i].p;
        size_t n = nals[i].n;
        if (n < 2)
            return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                            "bpg: NAL unit %zu is shorter than its header", i);
        int type = (p[0] >> 1) & 0x3f, layer = ((p[0] & 1) << 5) | (p[1] >> 3);
        if (layer != 0)
            continue; /* alpha stream (layer 1): not decoded, see npp_bpg_decode */
        if ((type == 39 || type == 40) && !sei_is_well_formed(p, n))
            return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                            "bpg: SEI NAL unit %zu is truncated or malformed", i);
        /* Animations: stop at the first slice of the second frame. */
        if (type < 32 && n > 2 && (p[2] & 0x80) && ++frames > 1)
            break;
        if (type < 32 && tail) {
            uint8_t *e = realloc(ext, n + tail);
            if (!e) {
                rc = bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
                goto out;
            }
            ext = e;
            memcpy(ext, p, n);
            memset(ext + n, 0xa5, tail);
            p = ext;
            n += tail;
        }
        de265_error e = de265_push_NAL(ctx, p, (int)n, 0, NULL);
        if (e != DE265_OK) {
            rc = de265_fail(errmsg, e, "push");
            goto out;
        }
    }
    de265_error e = de265_flush_data(ctx);
    if (e != DE265_OK) {
        rc = de265_fail(errmsg, e, "flush");
        goto out;
    }
    const struct de265_image *img = NULL;
    for (;;) {
        int more = 0;
        e = de265_decode(ctx, &more);
        if (e != DE265_OK && e != DE265_ERROR_WAITING_FOR_INPUT_DATA &&
            e != DE265_ERROR_IMAGE_BUFFER_FULL) {
            rc = de265_fail(errmsg, e, "decode");
            goto out;
        }
        if (!img)
            img = de265_peek_next_picture(ctx);
        if (!more || img || e != DE265_OK)
            break;
    }
    /* Any warning (premature end of slice, checksum mismatch, bad headers ...) means the
     * stream is damaged: we refuse it rather than return concealed pixels. */
    de265_error w = de265_get_warning(ctx);
    while (w == DE265_WARNING_NO_WPP_CANNOT_USE_MULTITHREADING)
        w = de265_get_warning(ctx);
    if (w != DE265_OK) {
        rc = de265_fail(errmsg, w, "warning");
        goto out;
    }
    if (!img) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: libde265 produced no picture");
        goto out;
    }
    static const enum de265_chroma CHROMA[4] = {de265_chroma_mono, de265_chroma_420,
                                                de265_chroma_422, de265_chroma_444};
    if (de265_get_chroma_format(img) != CHROMA[cfi] ||
        de265_get_bits_per_pixel(img, 0) != info->bit_depth ||
        de265_get_image_width(img, 0) < info->width ||
        de265_get_image_height(img, 0) < info->height) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_DECODER,
                      "bpg: libde265 returned a %dx%d %d-bit picture of chroma format %d, "
                      "expected %dx%d %d-bit format %d",
                      de265_get_image_width(img, 0), de265_get_image_height(img, 0),
                      de265_get_bits_per_pixel(img, 0), (int)de265_get_chroma_format(img),
                      info->width, info->height, info->bit_depth, cfi);
        goto out;
    }
    int cx, cy;
    if (scan && !de265_get_image_plane_user_data(img, 0)) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_DECODER,
                      "bpg: libde265 decoded into planes it allocated itself (no completeness check)");
        goto out;
    }
    if (scan &&
        find_undecoded_ctb(img, info->bit_depth,
                           1 << (hh->log2_min_cb_minus3 + 3 + hh->log2_diff_max_min_cb), &cx,
                           &cy)) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                      "bpg: HEVC data ends before the picture is complete (CTB %d,%d and "
                      "later not decoded)", cx, cy);
        goto out;
    }
    *pimg = img;
out:
    free(ext);
    return rc;
}

/* The decoded planes, cropped to the picture (what the colour conversion reads). */
static void crop_planes(const struct de265_image *img, const npp_bpg_info *info,
                        bpg_src_plane planes[3])
{
    const int cfi = bpg_chroma_format_idc(info->pixel_format);
    memset(planes, 0, sizeof(bpg_src_plane) * 3);
    for (int c = 0; c < (cfi ? 3 : 1); c++) {
        int stride = 0;
        planes[c].p = de265_get_image_plane(img, c, &stride);
        planes[c].stride_bytes = stride; /* bytes, also for >8-bit samples */
        planes[c].w = c && cfi != 3 ? (info->width + 1) >> 1 : info->width;
        planes[c].h = c && cfi == 1 ? (info->height + 1) >> 1 : info->height;
    }
}

static uint64_t planes_hash(const bpg_src_plane planes[3], int bit_depth)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int c = 0; c < 3 && planes[c].p; c++)
        for (int y = 0; y < planes[c].h; y++) {
            const uint8_t *row = planes[c].p + y * planes[c].stride_bytes;
            for (size_t i = 0, n = (size_t)planes[c].w * (bit_depth > 8 ? 2 : 1); i < n; i++)
                h = (h ^ row[i]) * 0x100000001b3ull;
        }
    return h;
}

/* libde265 reads zeros past the end of a slice without any warning, so a file cut in the
 * middle of its entropy-coded data can decode "cleanly" to garbage. A complete slice
 * ends (end_of_slice_segment_flag) before its last byte: bytes appended to it are never
 * read. Verification therefore decodes a second time with bytes appended to every
 * slice and requires identical planes. */
#define VERIFY_TAIL 64

/* Decode the colour stream of a parsed file into `out` (w*h*3 samples of out_bits). */
static int decode_colour(const uint8_t *data, size_t pos, size_t end, const npp_bpg_info *info,
                         const bpg_hevc_header *hh, int out_bits, int flags, uint8_t *out,
                         char **errmsg)
{
    nal_ref *nals = NULL;
    size_t nnal = 0;
    int rc = split_nals(data + pos, end - pos, &nals, &nnal, errmsg);
    if (rc)
        return rc;
    if (nnal == 0) {
        free(nals);
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: no HEVC data after the header");
    }
    const int cfi = bpg_chroma_format_idc(info->pixel_format);
    alloc_ctx actx = {info->bit_depth, cfi == 3 ? 1 : 2, cfi == 1 ? 2 : 1, cfi ? 3 : 1,
                      (flags & BPG_DECODE_OWN_STREAM) != 0};
    de265_decoder_context *ctx = NULL, *ctx2 = NULL;
    const struct de265_image *img = NULL, *img2 = NULL;
    bpg_src_plane planes[3], planes2[3];
    /* The completeness scan reads our sentinels, which libde265 decodes into only with SAO
     * off: a stream with SAO gets one more pass, without it, for the scan. (Without that
     * pass, a damaged file decoded to pixels of uninitialised heap that varied from call to
     * call; found by fuzz_decode, traced by valgrind.) */
    const int scan = !actx.own_stream;
    rc = de265_pass(nals, nnal, info, hh, &actx, 0, scan && !hh->sao, &ctx, &img, errmsg);
    if (rc)
        goto out;
    crop_planes(img, info, planes);
    if (scan && hh->sao) {
        rc = de265_pass(nals, nnal, info, hh, &actx, 0, 1, &ctx2, &img2, errmsg);
        if (rc)
            goto out;
        de265_free_decoder(ctx2);
        ctx2 = NULL;
    }
    if (flags & NPP_BPG_DECODE_VERIFY) {
        rc = de265_pass(nals, nnal, info, hh, &actx, VERIFY_TAIL, scan && !hh->sao, &ctx2, &img2,
                        errmsg);
        if (rc)
            goto out;
        crop_planes(img2, info, planes2);
        if (planes_hash(planes, info->bit_depth) != planes_hash(planes2, info->bit_depth)) {
            rc = bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                          "bpg: HEVC slice data is truncated (the decoder reads past its end)");
            goto out;
        }
    }
    rc = bpg_planes_to_rgb(planes, info->width, info->height, info->pixel_format,
                           info->bit_depth, info->color_space, info->limited_range, out_bits, out,
                           errmsg);
out:
    if (ctx)
        de265_free_decoder(ctx);
    if (ctx2)
        de265_free_decoder(ctx2);
    free(nals);
    return rc;
}

/* Parse everything up to the NAL data; on success *pos is its offset. The pixel limit
 * is checked on the file header, before the rest is read. */
static int parse_all(const uint8_t *data, size_t len, uint64_t max_pixels, npp_bpg_info *info,
                     size_t *pos, size_t *end, bpg_hevc_header *hh, int out_bits, char **errmsg)
{
    if (out_bits != 8 && out_bits != 16)
        return bpg_fail_arg(errmsg, "out_bits", "bpg: out_bits=%d; use 8 or 16", out_bits);
    int rc = bpg_parse_header(data, len, info, end, errmsg);
    if (rc)
        return rc;
    if (max_pixels == 0)
        max_pixels = NPP_BPG_DEFAULT_MAX_PIXELS;
    uint64_t pixels = (uint64_t)info->width * (uint64_t)info->height;
    if (pixels > max_pixels)
        return bpg_fail(errmsg, NPP_BPG_ERR_LIMIT,
                        "bpg: picture of %dx%d = %llu pixels is above the limit of %llu pixels",
                        info->width, info->height, (unsigned long long)pixels,
                        (unsigned long long)max_pixels);
    if (info->alpha2)
        return bpg_fail(errmsg, NPP_BPG_ERR_UNSUPPORTED,
                        "bpg: %s files are not supported by this decoder",
                        info->has_alpha ? "premultiplied-alpha" : "CMYK (W plane)");
    *pos = info->header_size;
    if (info->has_alpha) { /* the alpha compact header comes first; skip it */
        rc = bpg_parse_hevc_header(data, *end, pos, hh, errmsg);
        if (rc)
            return rc;
    }
    rc = bpg_parse_hevc_header(data, *end, pos, hh, errmsg);
    if (rc)
        return rc;
    /* Every intra prediction unit codes mpm_idx or rem_intra_luma_pred_mode, bypass bins
     * of one bit each, and every CTB holds at least one: data shorter than one bit per
     * CTB cannot be the picture, whatever it claims (a 38-byte file claiming 16384x16384
     * needs 8 kB at CTB 64). Refused here, before libde265 allocates the planes. */
    const uint64_t ctb = 1u << (hh->log2_min_cb_minus3 + 3 + hh->log2_diff_max_min_cb);
    const uint64_t nctb = ((uint64_t)info->width + ctb - 1) / ctb *
                          (((uint64_t)info->height + ctb - 1) / ctb);
    if ((uint64_t)(*end - *pos) < (nctb + 7) / 8)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: %zu bytes of picture data cannot hold a %dx%d picture (at least "
                        "%llu bytes: one bit per %llux%llu CTB)",
                        *end - *pos, info->width, info->height,
                        (unsigned long long)((nctb + 7) / 8), (unsigned long long)ctb,
                        (unsigned long long)ctb);
    return NPP_BPG_OK;
}

/* What both decode entry points do first: parse and check everything up to the NAL data
 * and size the RGB output (*need bytes). Nothing is allocated before this succeeds. */
static int begin_decode(const uint8_t *data, size_t len, int out_bits, uint64_t max_pixels,
                        npp_bpg_info *info, size_t *pos, size_t *end, bpg_hevc_header *hh,
                        size_t *need, char **errmsg)
{
    if (!data)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    int rc = parse_all(data, len, max_pixels, info, pos, end, hh, out_bits, errmsg);
    if (rc)
        return rc;
    *need = (size_t)info->width * info->height * 3 * (out_bits / 8);
    return NPP_BPG_OK;
}

int bpg_decode_into(const uint8_t *data, size_t len, int out_bits, int flags,
                    uint64_t max_pixels, uint8_t *out, size_t out_size, npp_bpg_info *info,
                    char **errmsg)
{
    npp_bpg_info local;
    if (!info)
        info = &local;
    size_t pos, end, need = 0;
    bpg_hevc_header hh;
    int rc = begin_decode(data, len, out_bits, max_pixels, info, &pos, &end, &hh, &need, errmsg);
    if (rc || (flags & NPP_BPG_DECODE_CHECK_ONLY))
        return rc;
    if (!out)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    if (out_size < need)
        return bpg_fail_arg(errmsg, "out_size",
                        "bpg: output buffer of %zu bytes is smaller than the %zu needed", out_size,
                        need);
    return decode_colour(data, pos, end, info, &hh, out_bits, flags, out, errmsg);
}

#define PUBLIC_FLAGS (NPP_BPG_DECODE_VERIFY | NPP_BPG_DECODE_CHECK_ONLY)

NPP_API(int) npp_bpg_decode_into(const uint8_t *data, size_t len, int out_bits, int flags,
                                 uint64_t max_pixels, uint8_t *out, size_t out_size,
                                 npp_bpg_info *info, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    return bpg_decode_into(data, len, out_bits, flags & PUBLIC_FLAGS, max_pixels, out, out_size,
                           info, errmsg);
}

NPP_API(int) npp_bpg_decode(const uint8_t *data, size_t len, int out_bits, int flags,
                            uint64_t max_pixels, uint8_t **out, size_t *out_len,
                            npp_bpg_info *info, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    npp_bpg_info local;
    if (!info)
        info = &local;
    if (!out || !out_len)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    *out = NULL;
    *out_len = 0;
    size_t pos, end, need = 0;
    bpg_hevc_header hh;
    int rc = begin_decode(data, len, out_bits, max_pixels, info, &pos, &end, &hh, &need, errmsg);
    if (rc || (flags & NPP_BPG_DECODE_CHECK_ONLY))
        return rc;
    uint8_t *buf = malloc(need);
    if (!buf)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory (%zu bytes)", need);
    rc = decode_colour(data, pos, end, info, &hh, out_bits, flags & NPP_BPG_DECODE_VERIFY, buf,
                       errmsg);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = need;
    return NPP_BPG_OK;
}
