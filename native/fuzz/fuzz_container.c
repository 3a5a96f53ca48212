/* SPDX-License-Identifier: GPL-2.0-or-later
 * libFuzzer harness: the container and header parsers on arbitrary bytes, without HEVC
 * decoding: the file header and extensions (npp_bpg_get_info), the compact HEVC headers,
 * the checks a decode makes before it allocates (NPP_BPG_DECODE_CHECK_ONLY at two pixel
 * limits), and the PPS / slice-header readers the encoder applies to x265's output. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

static void check_info_consistent(const npp_bpg_info *info, size_t len)
{
    FUZZ_CHECK(info->width >= 1 && info->width <= BPG_MAX_DIM && info->height >= 1 &&
                   info->height <= BPG_MAX_DIM,
               "accepted size %dx%d", info->width, info->height);
    FUZZ_CHECK(info->pixel_format >= 0 && info->pixel_format <= 5, "pixel_format %d",
               info->pixel_format);
    FUZZ_CHECK(info->bit_depth >= 8 && info->bit_depth <= 14, "bit depth %d", info->bit_depth);
    FUZZ_CHECK(info->header_size <= len, "header_size %zu beyond %zu bytes", info->header_size,
               len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    npp_bpg_info info;
    char *err = NULL;
    int rc = npp_bpg_get_info(data, len, &info, &err);
    fuzz_check_status(rc, err, "get_info");
    if (rc == NPP_BPG_OK) {
        check_info_consistent(&info, len);
        size_t end = 0;
        npp_bpg_info again;
        FUZZ_CHECK(bpg_parse_header(data, len, &again, &end, NULL) == NPP_BPG_OK &&
                       !memcmp(&again, &info, sizeof info) && end >= info.header_size &&
                       end <= len,
                   "bpg_parse_header disagrees with npp_bpg_get_info");
        /* Both compact headers, as a decoder would read them. */
        size_t pos = info.header_size;
        for (int k = 0; k < 2; k++) {
            bpg_hevc_header h;
            size_t before = pos;
            err = NULL;
            rc = bpg_parse_hevc_header(data, end, &pos, &h, &err);
            fuzz_check_status(rc, err, "parse_hevc_header");
            if (rc)
                break;
            FUZZ_CHECK(pos > before && pos <= end, "compact header moved pos %zu -> %zu (end %zu)",
                       before, pos, end);
            /* What a decoder feeds libde265 from it must be writable. */
            bpg_buf b = {0};
            bpg_write_vps(&b, bpg_chroma_format_idc(info.pixel_format), info.bit_depth);
            bpg_write_sps(&b, &h, bpg_chroma_format_idc(info.pixel_format), info.width,
                          info.height, info.bit_depth);
            FUZZ_CHECK(!b.oom && b.len > 0, "VPS/SPS writing failed");
            buf_free(&b);
        }
    }
    /* The pre-allocation checks of a decode, at the harness limit and with none. */
    const uint64_t limits[2] = {FUZZ_MAX_PIXELS, UINT64_MAX};
    for (int k = 0; k < 2; k++) {
        err = NULL;
        npp_bpg_info ci;
        rc = npp_bpg_decode_into(data, len, 8, NPP_BPG_DECODE_CHECK_ONLY, limits[k], NULL, 0, &ci,
                                 &err);
        fuzz_check_status(rc, err, "decode CHECK_ONLY");
        if (rc == NPP_BPG_OK)
            FUZZ_CHECK((uint64_t)ci.width * ci.height <= limits[k], "limit not applied");
        if (rc == NPP_BPG_ERR_LIMIT)
            FUZZ_CHECK(k == 0 && (uint64_t)ci.width * ci.height > limits[k],
                       "limit refusal of a %dx%d picture", ci.width, ci.height);
    }
    /* PPS and slice-header readers (bpg_slice.c) on the bytes as one NAL unit. */
    bpg_pps pps;
    memset(&pps, 0, sizeof pps);
    bpg_parse_pps(data, len, &pps);
    for (int cfi = 0; cfi < 4; cfi += 3) {
        bpg_buf out = {0};
        int r = bpg_canonical_slice(data, len, &pps, len & 1, cfi, &out);
        FUZZ_CHECK(r >= -1 && r <= 1, "canonical_slice returned %d", r);
        FUZZ_CHECK(r != 1 || out.len > 0, "canonical_slice wrote nothing");
        buf_free(&out);
    }
    return 0;
}
