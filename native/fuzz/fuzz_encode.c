/* SPDX-License-Identifier: GPL-2.0-or-later
 * libFuzzer harness: encoding small arbitrary pictures with arbitrary options, then
 * decoding the result. The first 11 bytes choose width and height (1..64), channels,
 * qp, pixel format, bit depth, colour space, range, lossless, level and hash; the rest
 * are the samples (repeated to fill the picture). An encode may refuse only invalid
 * options (NPP_BPG_ERR_ARGUMENT); what it writes must decode, verified, to a picture of
 * its size, and a lossless 8-bit RGB encode to exactly its input.
 *
 * Encoders are kept per configuration, as the Python pool keeps them: x265 3.5 leaks a
 * little per x265_encoder_open (see bpg_encode.c), which LeakSanitizer is told to ignore. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

#define MAX_SIDE 64
#define N_CACHED 64

static struct {
    npp_bpg_encode_params p;
    npp_bpg_encoder *enc;
} cache[N_CACHED];
static int n_cached, next_evicted;

static npp_bpg_encoder *encoder_for(const npp_bpg_encode_params *p)
{
    npp_bpg_encode_params key = *p;
    key.qp = 0; /* per picture */
    for (int i = 0; i < n_cached; i++)
        if (!memcmp(&cache[i].p, &key, sizeof key))
            return cache[i].enc;
    npp_bpg_encoder *enc = NULL;
    char *err = NULL;
    int rc = npp_bpg_encoder_new(&key, &enc, &err);
    fuzz_check_status(rc, err, "encoder_new");
    if (rc)
        return NULL;
    int slot = n_cached;
    if (n_cached < N_CACHED) {
        n_cached++;
    } else {
        slot = next_evicted;
        next_evicted = (next_evicted + 1) % N_CACHED;
        npp_bpg_encoder_free(cache[slot].enc);
    }
    cache[slot].p = key;
    cache[slot].enc = enc;
    return enc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 11)
        return 0;
    const int w = 1 + data[0] % MAX_SIDE, h = 1 + data[1] % MAX_SIDE;
    const int channels = data[2] & 1 ? 1 : 3;
    npp_bpg_encode_params p;
    npp_bpg_default_params(&p);
    p.qp = data[3] % 52;
    p.pixel_format = data[4] % 6;
    static const int DEPTHS[3] = {8, 10, 12};
    p.bit_depth = DEPTHS[data[5] % 3];
    p.color_space = data[6] % 5;
    p.limited_range = data[7] & 1;
    p.lossless = data[8] & 1;
    p.level = data[9] % 10;
    p.hash = data[10] & 1;
    data += 11;
    len -= 11;
    const size_t n = (size_t)w * h * channels;
    uint8_t *pixels = malloc(n);
    FUZZ_CHECK(pixels != NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        pixels[i] = len ? data[i % len] : (uint8_t)(i * 37);

    npp_bpg_encoder *enc = encoder_for(&p);
    if (!enc) {
        free(pixels);
        return 0; /* options refused at creation (checked by fuzz_check_status) */
    }
    uint8_t *bpg = NULL;
    size_t nbpg = 0;
    char *err = NULL;
    int rc = npp_bpg_encoder_encode(enc, pixels, w, h, channels, (ptrdiff_t)w * channels, p.qp,
                                    &bpg, &nbpg, &err);
    const int argument_error = rc == NPP_BPG_ERR_ARGUMENT;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", err ? err : "");
    fuzz_check_status(rc, err, "encode");
    /* Refusals: rgb colour space without 4:4:4 chroma; pictures too small for x265. */
    FUZZ_CHECK(rc == NPP_BPG_OK || argument_error,
               "encode %dx%d ch %d qp %d fmt %d depth %d cs %d lim %d lossless %d level %d "
               "hash %d failed with status %d: %s",
               w, h, channels, p.qp, p.pixel_format, p.bit_depth, p.color_space,
               p.limited_range, p.lossless, p.level, p.hash, rc, msg);
    if (rc) {
        free(pixels);
        return 0;
    }
    uint8_t *rgb = NULL;
    size_t nrgb = 0;
    npp_bpg_info info;
    err = NULL;
    rc = npp_bpg_decode(bpg, nbpg, 8, NPP_BPG_DECODE_VERIFY, 0, &rgb, &nrgb, &info, &err);
    snprintf(msg, sizeof msg, "%s", err ? err : "");
    fuzz_check_status(rc, err, "decode");
    FUZZ_CHECK(rc == NPP_BPG_OK && info.width == w && info.height == h,
               "our %zu-byte encode of %dx%d (fmt %d depth %d cs %d level %d) does not decode: %s",
               nbpg, w, h, p.pixel_format, p.bit_depth, p.color_space, p.level, msg);
    if (p.lossless && channels == 3 && p.pixel_format == NPP_BPG_FORMAT_444 &&
        p.color_space == NPP_BPG_CS_RGB && p.bit_depth == 8 && !p.limited_range)
        FUZZ_CHECK(!memcmp(rgb, pixels, nrgb), "lossless %dx%d encode is not exact", w, h);
    npp_bpg_free(rgb);
    npp_bpg_free(bpg);
    free(pixels);
    return 0;
}
