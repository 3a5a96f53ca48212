/* SPDX-License-Identifier: GPL-2.0-or-later
 * npp-bpgdec: BPG -> PNG through libnpp_bpg, with bpgdec's option names
 * (-o out.png, -b 16 for 16-bit output, -i for header information), plus -verify
 * (decode twice to detect truncated slice data, see NPP_BPG_DECODE_VERIFY). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npp_bpg.h"

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int write_png(const char *path, const uint8_t *rgb, int w, int h, int bits)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bits, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bits == 16) {
        const uint16_t one = 1;
        if (*(const uint8_t *)&one == 1)
            png_set_swap(png); /* PNG is big-endian */
    }
    size_t row = (size_t)w * 3 * (bits / 8);
    for (int y = 0; y < h; y++)
        png_write_row(png, rgb + row * y);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

#define USAGE "usage: npp-bpgdec [-o out.png] [-b 8|16] [-i] [-verify] [-max-pixels N] in.bpg\n"

int main(int argc, char **argv)
{
    const char *out = "out.png", *in = NULL;
    int bits = 8, info_only = 0, flags = 0;
    unsigned long long max_pixels = 0; /* 0: NPP_BPG_DEFAULT_MAX_PIXELS */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "-b") && i + 1 < argc) bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-i")) info_only = 1;
        else if (!strcmp(argv[i], "-verify")) flags = NPP_BPG_DECODE_VERIFY;
        else if (!strcmp(argv[i], "-max-pixels") && i + 1 < argc)
            max_pixels = strtoull(argv[++i], NULL, 10);
        else if (argv[i][0] == '-') {
            fputs(USAGE, stderr);
            return 2;
        } else in = argv[i];
    }
    if (!in || (bits != 8 && bits != 16)) {
        fputs(USAGE, stderr);
        return 2;
    }
    size_t len = 0;
    uint8_t *data = read_file(in, &len);
    if (!data) {
        perror(in);
        return 1;
    }
    npp_bpg_info info;
    char *err = NULL;
    if (info_only) {
        int rc = npp_bpg_get_info(data, len, &info, &err);
        free(data);
        if (rc) {
            fprintf(stderr, "npp-bpgdec: %s\n", err ? err : "invalid file");
            npp_bpg_free(err);
            return 1;
        }
        static const char *const FMT[6] = {"gray", "4:2:0", "4:2:2", "4:4:4", "4:2:0_video",
                                           "4:2:2_video"};
        printf("size=%dx%d format=%s color_space=%d limited_range=%d bit_depth=%d alpha=%d "
               "animation=%d\n",
               info.width, info.height, FMT[info.pixel_format], info.color_space,
               info.limited_range, info.bit_depth, info.has_alpha, info.animation);
        return 0;
    }
    uint8_t *rgb = NULL;
    size_t n = 0;
    int rc = npp_bpg_decode(data, len, bits, flags, max_pixels, &rgb, &n, &info, &err);
    free(data);
    if (rc) {
        fprintf(stderr, "npp-bpgdec: %s\n", err ? err : "decoding failed");
        npp_bpg_free(err);
        return 1;
    }
    int ok = write_png(out, rgb, info.width, info.height, bits);
    npp_bpg_free(rgb);
    if (!ok) {
        fprintf(stderr, "npp-bpgdec: cannot write %s\n", out);
        return 1;
    }
    return 0;
}
