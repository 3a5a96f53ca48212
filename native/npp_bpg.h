/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * npp_bpg: the BPG still-image format on Debian's libx265 (encoder) and libde265
 * (decoder). Flat C API for ctypes: every call is thread-safe and independent of the
 * others in what it reads and returns, and the library allocates and frees what it
 * returns. It does change one process-wide thing: before the first encoder of a bit
 * depth opens, it shifts x265's lambda tables (which x265 keeps as globals) by one QP,
 * once per process and bit depth, so that a QP gives bpgenc's rate and quality; every
 * x265 encoder in the process, ours or another library's on the same libx265, then uses
 * the shifted tables (NPP_BPG_X265_LAMBDA=x265 keeps x265's own; npp_bpg_x265_lambda
 * below says which are in use; bpg_lambda.c says why). The other static objects: a mutex
 * serialising x265_encoder_open/close, because x265 initialises process-wide tables
 * there, and a pthread_once that keeps libde265's lookup tables initialised.
 *
 * Format reference: ../shared/conformance/bpg/FORMAT.md (libbpg 0.9.8). Pixel
 * pre-processing (RGB -> YCbCr, chroma decimation, padding) and post-processing
 * (cropping, chroma upsampling, YCbCr -> RGB) follow its sections 11 and 12
 * bit-exactly, so decoded RGB equals the reference bpgdec's.
 */
#ifndef NPP_BPG_H
#define NPP_BPG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NPP_API(type) __declspec(dllexport) type
#else
#define NPP_API(type) __attribute__((visibility("default"))) type
#endif

#define NPP_BPG_VERSION "1.0.0"
/* Bumped whenever a struct below or a prototype changes (checked by the loader). */
#define NPP_BPG_ABI 7

/* Status codes (the return value of every fallible call). */
enum {
    NPP_BPG_OK = 0,
    NPP_BPG_ERR_ARGUMENT = 1,    /* bad parameter or image */
    NPP_BPG_ERR_NOMEM = 2,       /* allocation failed */
    NPP_BPG_ERR_CORRUPT = 3,     /* not BPG, truncated or corrupt bitstream */
    NPP_BPG_ERR_UNSUPPORTED = 4, /* valid BPG using a feature we do not decode */
    NPP_BPG_ERR_ENCODER = 5,     /* libx265 refused or failed */
    NPP_BPG_ERR_DECODER = 6,     /* libde265 failed on a well-formed container */
    NPP_BPG_ERR_LIMIT = 7        /* the picture has more pixels than the caller allows */
};

/* The pixel limit of the decoders when the caller passes max_pixels = 0: twice Pillow's
 * MAX_IMAGE_PIXELS, the size above which Pillow refuses a file as a decompression bomb.
 * The limit is checked on the file header, before anything is allocated; pass
 * UINT64_MAX for no limit (the format's own is 65535 per side). */
#define NPP_BPG_DEFAULT_MAX_PIXELS 178956970u

/* pixel_format of the BPG header (also the "chroma" option of the encoder). */
enum {
    NPP_BPG_FORMAT_GRAY = 0,
    NPP_BPG_FORMAT_420 = 1,       /* JPEG chroma siting (bpgenc default) */
    NPP_BPG_FORMAT_422 = 2,
    NPP_BPG_FORMAT_444 = 3,
    NPP_BPG_FORMAT_420_VIDEO = 4, /* MPEG-2 siting */
    NPP_BPG_FORMAT_422_VIDEO = 5
};

/* color_space of the BPG header. */
enum {
    NPP_BPG_CS_YCBCR = 0, /* BT.601 */
    NPP_BPG_CS_RGB = 1,   /* G, B, R planes */
    NPP_BPG_CS_YCGCO = 2,
    NPP_BPG_CS_YCBCR_BT709 = 3,
    NPP_BPG_CS_YCBCR_BT2020 = 4
};

/* level 0 is not a bpgenc level: x265 "ultrafast" with a 16x16 CTU, the fast setting
 * for training loops. 1..9 map to x265 presets as bpgenc -m does. */
#define NPP_BPG_LEVEL_FAST 0

typedef struct npp_bpg_encode_params {
    int qp;            /* 0..51 (ignored when lossless) */
    int pixel_format;  /* NPP_BPG_FORMAT_* */
    int bit_depth;     /* 8, 10 or 12 */
    int color_space;   /* NPP_BPG_CS_* ; gray needs a YCbCr/YCgCo space */
    int limited_range; /* 0 or 1 */
    int lossless;      /* 0 or 1: x265 lossless (transquant bypass) */
    int level;         /* 0 (fast) or 1..9 like bpgenc -m; default 8 */
    int hash;          /* 0 or 1: MD5 picture hash SEI (bpgenc -hash) */
} npp_bpg_encode_params;

typedef struct npp_bpg_info {
    int width, height;
    int pixel_format;  /* NPP_BPG_FORMAT_* */
    int bit_depth;     /* 8..14 */
    int color_space;   /* NPP_BPG_CS_* (5+ reserved) */
    int limited_range;
    int has_alpha;     /* alpha1_flag */
    int alpha2;        /* premultiplied alpha (with alpha) or W plane (without) */
    int animation;
    int has_extension;
    uint32_t extension_tags; /* bit t set when an extension record with tag t < 32 exists */
    int loop_count, frame_period_num, frame_period_den; /* animation extension (tag 5) */
    size_t header_size; /* bytes before the first compact HEVC header */
} npp_bpg_info;

/* Library version string, e.g. "1.0.0 (x265 build 199, libde265 1.0.11)". Static, do not
 * free. */
NPP_API(const char *) npp_bpg_version(void);
/* NPP_BPG_ABI of the built library. */
NPP_API(int) npp_bpg_abi(void);
/* bpgenc's defaults: qp 29, 4:2:0, 8 bit, YCbCr BT.601, full range, level 8. */
NPP_API(void) npp_bpg_default_params(npp_bpg_encode_params *params);

/* Encode an interleaved 8-bit image (channels 1 = gray or 3 = RGB, rows `stride`
 * bytes apart) to a BPG file in *out (free with npp_bpg_free). On failure returns
 * a status and, when errmsg is not NULL, a message in *errmsg (free it too). */
NPP_API(int) npp_bpg_encode(const uint8_t *pixels, int width, int height, int channels,
                            ptrdiff_t stride, const npp_bpg_encode_params *params,
                            uint8_t **out, size_t *out_len, char **errmsg);

/* A reusable encoder (one per thread: a handle is not safe for concurrent use). It
 * keeps its x265 instance open while size and format stay the same, which is much
 * cheaper than npp_bpg_encode per picture (and avoids x265 3.5's per-open leak). The
 * output is identical to npp_bpg_encode's with the same parameters and qp. */
typedef struct npp_bpg_encoder npp_bpg_encoder;
NPP_API(int) npp_bpg_encoder_new(const npp_bpg_encode_params *params, npp_bpg_encoder **enc,
                                 char **errmsg);
NPP_API(int) npp_bpg_encoder_encode(npp_bpg_encoder *enc, const uint8_t *pixels, int width,
                                    int height, int channels, ptrdiff_t stride, int qp,
                                    uint8_t **out, size_t *out_len, char **errmsg);
NPP_API(void) npp_bpg_encoder_free(npp_bpg_encoder *enc);

/* Parse the container header only (no HEVC decoding, no pixel limit: it reports the
 * size a file claims). */
NPP_API(int) npp_bpg_get_info(const uint8_t *data, size_t len, npp_bpg_info *info,
                              char **errmsg);

/* Decoding flags. VERIFY decodes twice to detect slice data cut short, which libde265
 * does not report (it reads zeros past the end): use it for files from outside, not
 * for bitstreams just produced by npp_bpg_encode. Costs a second HEVC decode. (Every
 * decode of a file from outside also checks that each CTB was decoded, in one more
 * pass without SAO when the stream has SAO.)
 * CHECK_ONLY parses and checks the file up to its HEVC data (header, pixel limit, a data
 * length that can hold the picture), fills *info and decodes nothing: out may be NULL. */
#define NPP_BPG_DECODE_VERIFY 1
#define NPP_BPG_DECODE_CHECK_ONLY 2

/* Decode a BPG file to interleaved RGB: out_bits 8 gives uint8 samples, 16 gives
 * native-endian uint16 samples (bpgdec -b 16). *out holds width*height*3 samples
 * (free with npp_bpg_free). An alpha plane (non-premultiplied) is ignored;
 * premultiplied alpha and CMYK (W plane) files give NPP_BPG_ERR_UNSUPPORTED.
 * Animations decode to their first frame. Any decoder warning, a missing CTB or a
 * malformed SEI gives NPP_BPG_ERR_CORRUPT.
 * Before anything is allocated, a picture of more than max_pixels pixels (0: the default
 * NPP_BPG_DEFAULT_MAX_PIXELS) gives NPP_BPG_ERR_LIMIT, and picture data too short to hold
 * the picture (HEVC codes every intra prediction unit with at least one bypass bit, so
 * at least one bit per CTB) gives NPP_BPG_ERR_CORRUPT. */
NPP_API(int) npp_bpg_decode(const uint8_t *data, size_t len, int out_bits, int flags,
                            uint64_t max_pixels, uint8_t **out, size_t *out_len,
                            npp_bpg_info *info, char **errmsg);

/* As npp_bpg_decode, into a caller buffer of out_size bytes, which must hold
 * width*height*3 samples (get them with npp_bpg_get_info). */
NPP_API(int) npp_bpg_decode_into(const uint8_t *data, size_t len, int out_bits, int flags,
                                 uint64_t max_pixels, uint8_t *out, size_t out_size,
                                 npp_bpg_info *info, char **errmsg);

/* Round trips of a batch, the training loop's route: n images of height x width as
 * float32 (N, 3, H, W), element strides in_strides[4] (NULL: contiguous; channels-last
 * and other layouts are read in place), values in [0, 1] (within 1e-6; NaN, infinities
 * or values outside give NPP_BPG_ERR_ARGUMENT naming the image), are each turned into
 * 8-bit RGB (clamp, * 255, round half to even), encoded at qp, decoded (no verification
 * pass) and written back to out as contiguous float32 (N, 3, H, W) = RGB / 255; bytes[i]
 * gets the size of image i's BPG file. One thread per encoder handle (the caller's thread
 * is one of them, at most 256 threads); each handle is used by its thread only, so pass
 * n_encoders handles made with the same parameters. On failure returns the first error's
 * status. */
NPP_API(int) npp_bpg_roundtrip_batch(npp_bpg_encoder *const *encoders, int n_encoders,
                                     const float *in, const int64_t in_strides[4], int n,
                                     int height, int width, int qp, float *out, uint64_t *bytes,
                                     char **errmsg);

/* The same, writing the decoded 8-bit samples to out as contiguous uint8 (N, 3, H, W):
 * a quarter of the float output's memory, for callers that keep the decoded image. */
NPP_API(int) npp_bpg_roundtrip_batch_u8(npp_bpg_encoder *const *encoders, int n_encoders,
                                        const float *in, const int64_t in_strides[4], int n,
                                        int height, int width, int qp, uint8_t *out,
                                        uint64_t *bytes, char **errmsg);

/* Which lambda tables x265 uses for this bit depth (state of npp_bpg_x265_lambda). */
enum {
    NPP_BPG_LAMBDA_BPGENC = 0,         /* shifted one QP: rate and quality as bpgenc's -q */
    NPP_BPG_LAMBDA_X265 = 1,           /* x265's own, as NPP_BPG_X265_LAMBDA=x265 asked */
    NPP_BPG_LAMBDA_X265_NOT_FOUND = 2  /* x265's own: not exported, or not x265 3.5's */
};

/* Decide (once per bit depth and process, before the first encoder of that depth
 * opens; encoders call this themselves) and report in *state (if not NULL) which lambda
 * tables x265 uses. x265 keeps them process-wide; see bpg_lambda.c for why we shift them. Fails
 * only for a bit depth other than 8/10/12 or an unknown NPP_BPG_X265_LAMBDA value. */
NPP_API(int) npp_bpg_x265_lambda(int bit_depth, int *state, char **errmsg);

/* Free anything this library returned (NULL is fine). */
NPP_API(void) npp_bpg_free(void *ptr);
/* The argument an error message from this library is about ("qp", "bit_depth", "image", ...),
 * or NULL when it names none (it always does for NPP_BPG_ERR_ARGUMENT about a parameter or
 * the image). The string lives inside errmsg's buffer: do not free it, nor use it after
 * npp_bpg_free(errmsg). Only for messages made by this library. */
NPP_API(const char *) npp_bpg_error_argument(const char *errmsg);

#ifdef __cplusplus
}
#endif
#endif /* NPP_BPG_H */
