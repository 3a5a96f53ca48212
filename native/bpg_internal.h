/* SPDX-License-Identifier: GPL-2.0-or-later
 * Internal declarations shared by the npp_bpg translation units (not exported). */
#ifndef NPP_BPG_INTERNAL_H
#define NPP_BPG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "npp_bpg.h"

/* Hot pixel loops get an AVX2 clone next to the baseline one, picked at load time on
 * CPUs that have it (GCC/Clang function multi-versioning on x86-64 glibc); integer
 * arithmetic only, so both clones give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && !defined(NPP_NO_CLONES)
#define BPG_HOT __attribute__((target_clones("avx2", "default")))
#else
#define BPG_HOT
#endif

#define BPG_MAGIC 0x425047FBu
/* Largest picture side we accept (the pixel count is the caller's limit, see
 * npp_bpg_decode). */
#define BPG_MAX_DIM 65535
#define BPG_MIN_CB 8 /* bpgenc's (and our) minimum coding block / padding unit */
/* Bytes allocated (zeroed) past the end of every plane handed to x265: its SIMD input copy
 * reads whole vectors, past the last row's end (a SEGV when the plane ended at a page
 * boundary; found by fuzz_encode). */
#define BPG_X265_INPUT_SLACK 256

/* ---- errors --------------------------------------------------------------------- */

/* Set *errmsg (if errmsg is not NULL) to a malloc'ed printf-style message; returns code.
 * The buffer is the message, a NUL, then the name of the argument the error is about and
 * a NUL (empty here; see bpg_fail_arg and npp_bpg_error_argument). */
int bpg_fail(char **errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* NPP_BPG_ERR_ARGUMENT about `argument` (a parameter name such as "qp", or "image"), which
 * npp_bpg_error_argument returns to the caller as data. */
int bpg_fail_arg(char **errmsg, const char *argument, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- decoding (npp_bpg.c) ---------------------------------------------------------- */

/* A decode flag for bitstreams our encoder produced in the same call: every CTB is
 * there, so the guards against cut-short streams (sentinel-filled planes, the
 * completeness scan) are skipped. Not accepted from outside the library. */
#define BPG_DECODE_OWN_STREAM (1 << 16)

/* npp_bpg_decode_into with internal flags, without clearing *errmsg. */
int bpg_decode_into(const uint8_t *data, size_t len, int out_bits, int flags,
                    uint64_t max_pixels, uint8_t *out, size_t out_size, npp_bpg_info *info,
                    char **errmsg);

/* ---- large pictures (bpg_encode.c, bpg_batch.c) ------------------------------------ */

/* Pictures above this many pixels close their x265 instance after each encode, and batch
 * round trips of them start by returning freed heap to the system (glibc). */
#define BPG_KEEP_X265_PIXELS (1u << 21)

/* ---- x265 lambda tables (bpg_lambda.c) ------------------------------------------- */

/* npp_bpg_x265_lambda without clearing *errmsg (state may be NULL); called before every
 * x265 open. */
int bpg_x265_lambda(int bit_depth, int *state, char **errmsg);

/* ---- growable byte buffer -------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int oom;
} bpg_buf;

void buf_put(bpg_buf *b, const void *src, size_t n);
void buf_byte(bpg_buf *b, uint8_t v);
void buf_ue7(bpg_buf *b, uint32_t v);
void buf_free(bpg_buf *b);

/* ---- bit reader / writer (MSB first) --------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t nbits, pos;
    int overrun;
} bpg_bitreader;

void br_init(bpg_bitreader *br, const uint8_t *p, size_t nbytes);
uint32_t br_u(bpg_bitreader *br, int n); /* n <= 32 */
uint32_t br_ue(bpg_bitreader *br);       /* Exp-Golomb, up to 2^32-2 */

typedef struct {
    bpg_buf *out;
    uint32_t acc;
    int nacc;
} bpg_bitwriter;

void bw_u(bpg_bitwriter *bw, uint32_t v, int n);
void bw_ue(bpg_bitwriter *bw, uint32_t v);
void bw_align_zero(bpg_bitwriter *bw);   /* zero bits up to a byte boundary */
void bw_trailing(bpg_bitwriter *bw);     /* rbsp_trailing_bits: 1 then zeros */

/* ue7: byte-aligned BPG integer; returns 0 on success, -1 if invalid/truncated. */
int read_ue7(const uint8_t *p, size_t len, size_t *pos, uint32_t *v);

/* RBSP <-> escaped NAL payload (emulation prevention 0x03 bytes). */
size_t rbsp_unescape(const uint8_t *src, size_t n, uint8_t *dst);
void nal_put_escaped(bpg_buf *b, const uint8_t *rbsp, size_t n);

/* ---- container --------------------------------------------------------------------- */

/* Fields of the compact HEVC header (FORMAT.md section 4). */
typedef struct {
    uint32_t log2_min_cb_minus3, log2_diff_max_min_cb;
    uint32_t log2_min_tb_minus2, log2_diff_max_min_tb;
    uint32_t max_th_depth_intra;
    int sao, pcm;
    int pcm_bd_luma_minus1, pcm_bd_chroma_minus1;
    uint32_t log2_min_pcm_minus3, log2_diff_max_min_pcm;
    int pcm_loop_filter_disabled;
    int strong_intra_smoothing;
    int ext_present, range_ext;
    int rext[9]; /* transform_skip_rotation ... cabac_bypass_alignment */
} bpg_hevc_header;

int bpg_parse_header(const uint8_t *data, size_t len, npp_bpg_info *info, size_t *payload_end,
                     char **errmsg);
/* Parse one compact header at data[*pos]; advances *pos past it. */
int bpg_parse_hevc_header(const uint8_t *data, size_t len, size_t *pos, bpg_hevc_header *h,
                          char **errmsg);
void bpg_write_hevc_header(bpg_buf *b, const bpg_hevc_header *h);
/* x265's SPS NAL (with its 2-byte header, escaped) -> compact header fields. */
int bpg_hevc_header_from_sps(const uint8_t *nal, size_t n, int width, int height, int bit_depth,
                             bpg_hevc_header *h, char **errmsg);
/* Escaped VPS and SPS NAL units (no start codes) for a standard decoder. */
void bpg_write_vps(bpg_buf *b, int chroma_format_idc, int bit_depth);
void bpg_write_sps(bpg_buf *b, const bpg_hevc_header *h, int chroma_format_idc, int width,
                   int height, int bit_depth);
int bpg_chroma_format_idc(int pixel_format);

/* ---- slice headers (bpg_slice.c) --------------------------------------------------- */

typedef struct {
    int valid;
    int dependent_slices, output_flag_present, extra_slice_header_bits;
    int slice_chroma_qp_offsets, chroma_qp_offset_list;
    int deblocking_override_enabled, deblocking_disabled, lf_across_slices;
} bpg_pps;

/* Parse the PPS fields an I-slice header depends on; 0 on success. */
int bpg_parse_pps(const uint8_t *nal, size_t n, bpg_pps *pps);
/* If `nal` is an IDR slice whose header carries slice_loop_filter_across_slices_enabled_flag,
 * append it to `out` with that flag set to 1 and return 1; return 0 to leave it as is,
 * -1 on out of memory. */
int bpg_canonical_slice(const uint8_t *nal, size_t n, const bpg_pps *pps, int sao,
                        int chroma_format_idc, bpg_buf *out);

/* ---- pixel pipelines (FORMAT.md sections 11 and 12) --------------------------------- */

/* A plane of B-bit samples stored as uint16. */
typedef struct {
    uint16_t *p;
    int w, h;
    ptrdiff_t stride; /* in samples */
} bpg_plane;

/* Encoder side: 8-bit interleaved input -> padded W8 x H8 planes (12.2-12.4).
 * planes[0..ncomp-1] are allocated here (free with free(planes[i].p)). */
int bpg_prepare_planes(const uint8_t *pixels, int width, int height, int channels,
                       ptrdiff_t stride, int pixel_format, int bit_depth, int color_space,
                       int limited_range, bpg_plane planes[3], char **errmsg);

/* Decoder side: cropped decoded planes -> interleaved RGB at out_bits (11.2-11.7).
 * planes[k].w/h are the coded (possibly padded) plane sizes; the picture is w x h. */
typedef struct {
    const uint8_t *p;
    ptrdiff_t stride_bytes;
    int w, h; /* available samples */
} bpg_src_plane;

int bpg_planes_to_rgb(const bpg_src_plane planes[3], int width, int height, int pixel_format,
                      int bit_depth, int color_space, int limited_range, int out_bits,
                      uint8_t *out, char **errmsg);

#endif /* NPP_BPG_INTERNAL_H */
