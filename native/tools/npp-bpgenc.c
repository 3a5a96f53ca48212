/* SPDX-License-Identifier: GPL-2.0-or-later
 * npp-bpgenc: PNG -> BPG through libnpp_bpg, with bpgenc's option names.
 * Used by the subprocess benchmark (the route CompressAI and the paper's code take). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npp_bpg.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: npp-bpgenc [-o out.bpg] [-q qp] [-m level 1..9] [-fast]\n"
            "                  [-f 420|422|444|420_video|422_video|gray] [-b 8|10|12]\n"
            "                  [-c ycbcr|rgb|ycgco|ycbcr_bt709|ycbcr_bt2020] [-limitedrange]\n"
            "                  [-lossless] [-hash] in.png\n");
    exit(2);
}

static int lookup(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(v, names[i]))
            return i;
    fprintf(stderr, "npp-bpgenc: invalid value '%s'\n", v);
    exit(2);
}

int main(int argc, char **argv)
{
    static const char *const FMT[6] = {"gray", "420", "422", "444", "420_video", "422_video"};
    static const char *const CS[5] = {"ycbcr", "rgb", "ycgco", "ycbcr_bt709", "ycbcr_bt2020"};
    npp_bpg_encode_params p;
    npp_bpg_default_params(&p);
    const char *out = "out.bpg", *in = NULL;
    int cs_set = 0, fmt_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "-q") && has) p.qp = atoi(argv[++i]);
        else if (!strcmp(a, "-m") && has) p.level = atoi(argv[++i]);
        else if (!strcmp(a, "-fast")) p.level = NPP_BPG_LEVEL_FAST;
        else if (!strcmp(a, "-b") && has) p.bit_depth = atoi(argv[++i]);
        else if (!strcmp(a, "-f") && has) p.pixel_format = lookup(argv[++i], FMT, 6), fmt_set = 1;
        else if (!strcmp(a, "-c") && has) p.color_space = lookup(argv[++i], CS, 5), cs_set = 1;
        else if (!strcmp(a, "-limitedrange")) p.limited_range = 1;
        else if (!strcmp(a, "-hash")) p.hash = 1;
        else if (!strcmp(a, "-lossless")) {
            /* as bpgenc: RGB, 4:4:4, 8 bit, full range (later -c/-f/-b override) */
            p.lossless = 1, p.color_space = NPP_BPG_CS_RGB, p.pixel_format = NPP_BPG_FORMAT_444;
            p.bit_depth = 8, p.limited_range = 0;
        } else if (a[0] == '-') usage();
        else in = a;
    }
    if (!in)
        usage();
    if (cs_set && p.color_space == NPP_BPG_CS_RGB && !fmt_set)
        p.pixel_format = NPP_BPG_FORMAT_444; /* bpgenc: -c rgb forces 4:4:4 */

    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, in)) {
        fprintf(stderr, "npp-bpgenc: %s: %s\n", in, img.message);
        return 1;
    }
    int channels = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    img.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    size_t stride = (size_t)img.width * channels;
    uint8_t *pix = malloc(stride * img.height);
    if (!pix || !png_image_finish_read(&img, NULL, pix, (png_int_32)stride, NULL)) {
        fprintf(stderr, "npp-bpgenc: %s: %s\n", in, pix ? img.message : "out of memory");
        return 1;
    }
    uint8_t *bpg = NULL;
    size_t len = 0;
    char *err = NULL;
    int rc = npp_bpg_encode(pix, (int)img.width, (int)img.height, channels, (ptrdiff_t)stride, &p,
                            &bpg, &len, &err);
    free(pix);
    if (rc) {
        fprintf(stderr, "npp-bpgenc: %s\n", err ? err : "encoding failed");
        npp_bpg_free(err);
        return 1;
    }
    FILE *f = fopen(out, "wb");
    int ok = f && fwrite(bpg, 1, len, f) == len;
    ok = f && fclose(f) == 0 && ok;
    npp_bpg_free(bpg);
    if (!ok) {
        perror(out);
        return 1;
    }
    return 0;
}
