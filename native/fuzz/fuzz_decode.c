/* SPDX-License-Identifier: GPL-2.0-or-later
 * libFuzzer harness: the full decode of arbitrary bytes (container, NAL splitting, SEI
 * checks, libde265 with our allocator and completeness scan, the verification pass, the
 * colour conversion), at 8 and 16 bits out. A success must agree with the header and
 * succeed again unverified. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    uint8_t *rgb = NULL;
    size_t n = 0;
    npp_bpg_info info;
    char *err = NULL;
    int rc = npp_bpg_decode(data, len, 8, NPP_BPG_DECODE_VERIFY, FUZZ_MAX_PIXELS, &rgb, &n, &info,
                            &err);
    fuzz_check_status(rc, err, "decode");
    if (rc != NPP_BPG_OK) {
        FUZZ_CHECK(rgb == NULL && n == 0, "failed decode returned a buffer");
        return 0;
    }
    FUZZ_CHECK(n == (size_t)info.width * info.height * 3, "decoded %zu bytes for %dx%d", n,
               info.width, info.height);
    npp_bpg_info hdr;
    err = NULL;
    rc = npp_bpg_get_info(data, len, &hdr, &err);
    fuzz_check_status(rc, err, "get_info");
    FUZZ_CHECK(rc == NPP_BPG_OK && hdr.width == info.width && hdr.height == info.height,
               "decoded a file whose header does not read");
    /* The same file into a caller buffer, 16 bits out, without verification. */
    uint16_t *wide = malloc(n * 2);
    FUZZ_CHECK(wide != NULL, "out of memory");
    err = NULL;
    rc = npp_bpg_decode_into(data, len, 16, 0, FUZZ_MAX_PIXELS, (uint8_t *)wide, n * 2, &info,
                             &err);
    fuzz_check_status(rc, err, "decode_into 16");
    FUZZ_CHECK(rc == NPP_BPG_OK, "verified file fails the unverified 16-bit decode");
    FUZZ_CHECK(info.width == hdr.width && info.height == hdr.height, "16-bit decode size");
    free(wide);
    npp_bpg_free(rgb);
    return 0;
}
