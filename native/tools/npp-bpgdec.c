/* SPDX-License-Identifier: GPL-2.0-or-later
 * npp-bpgdec: libbpg 0.9.8's bpgdec on libnpp_bpg. Same options (-o out.[png|ppm], -b 8|16
 * for PNG, -i), the same choice of output format (PPM when the name has no extension or
 * ends in .ppm, else PNG), the same -i lines, and exit status 1 for every error and for -h.
 * The pixels equal bpgdec's (the library's decoder is bit-exact with it).
 * Not supported, with a one-line error: files with an alpha or W (CMYK) plane (bpgdec
 * would write RGBA), and -b 16 for PPM (bpgdec writes 8-bit PPM whatever -b says).
 * Our addition: -verify, which decodes twice to catch slice data cut short
 * (NPP_BPG_DECODE_VERIFY). Animations decode to their first frame, as with bpgdec. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <png.h>

#include "bpg_internal.h" /* read_ue7: the tools link the library's objects */
#include "npp_bpg.h"
#include "tool_util.h"

/* Larger inputs are refused before they are read: far above any picture the library
 * accepts (TOOL_MAX_PIXELS at 14 bits per sample, losslessly, plus metadata). */
#define MAX_FILE_BYTES ((size_t)2 << 30)

static _Noreturn void help(void)
{
    printf("BPG Image Decoder version %s\n"
           "npp-bpgdec: the command line of bpgdec 0.9.8 on libnpp_bpg (npp_plugin)\n"
           "usage: npp-bpgdec [options] infile\n"
           "Options:\n"
           "-o outfile.[ppm|png]   set the output filename (default = out.png)\n"
           "-b bit_depth           PNG output only: use bit_depth per component (8 or 16, "
           "default = 8)\n"
           "-i                     display information about the image\n"
           "-verify                npp: decode twice to detect slice data cut short\n"
           "-max-pixels N          npp: refuse pictures above N pixels (default 178956970)\n",
           npp_bpg_version());
    exit(1); /* as bpgdec */
}

/* bpgdec -i: one line, then the extension records if there are any. */
static void show_info(const char *path, const uint8_t *data, size_t len)
{
    static const char *const FORMAT[6] = {"Gray",  "4:2:0",       "4:2:2",
                                          "4:4:4", "4:2:0_video", "4:2:2_video"};
    static const char *const SPACE[5] = {"YCbCr", "RGB", "YCgCo", "YCbCr_BT709",
                                         "YCbCr_BT2020"};
    static const char *const TAG[6] = {"Unknown", "EXIF", "ICC profile", "XMP", "Thumbnail",
                                       "Animation control"};
    npp_bpg_info info;
    char *err = NULL;
    if (npp_bpg_get_info(data, len, &info, &err) || info.color_space > 4) {
        npp_bpg_free(err);
        tool_die("%s: not a BPG image", path);
    }
    int alpha = info.has_alpha || info.alpha2, w_plane = !info.has_alpha && info.alpha2;
    printf("size=%dx%d color_space=%s", info.width, info.height,
           info.pixel_format == NPP_BPG_FORMAT_GRAY ? "Gray" : SPACE[info.color_space]);
    if (w_plane)
        printf(" w_plane=%d", w_plane);
    if (alpha)
        printf(" alpha=%d premul=%d", alpha, info.has_alpha && info.alpha2);
    printf(" format=%s limited_range=%d bit_depth=%d animation=%d\n", FORMAT[info.pixel_format],
           info.limited_range, info.bit_depth, info.animation);
    if (!info.has_extension)
        return;
    /* magic, two flag bytes, width, height, picture_data_length, extension_data_length */
    size_t pos = 6, end;
    uint32_t v, ext_len = 0;
    for (int k = 0; k < 3; k++)
        read_ue7(data, len, &pos, &v);
    if (read_ue7(data, len, &pos, &ext_len) || ext_len > len - pos)
        tool_die("%s: corrupt extension data", path);
    end = pos + ext_len;
    printf("Extension data:\n");
    while (pos < end) {
        uint32_t tag, n;
        if (read_ue7(data, end, &pos, &tag) || read_ue7(data, end, &pos, &n) ||
            n > end - pos)
            tool_die("%s: corrupt extension data", path);
        printf("  tag=%u (%s) length=%u\n", tag, TAG[tag <= 5 ? tag : 0], n);
        pos += n;
    }
}

static int write_ppm(const char *path, const uint8_t *rgb, int w, int h)
{
    char head[64];
    int n = snprintf(head, sizeof head, "P6\n%d %d\n%d\n", w, h, 255);
    const void *parts[2] = {head, rgb};
    size_t sizes[2] = {(size_t)n, (size_t)w * h * 3};
    return tool_write_file(path, parts, sizes, 2);
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} membuf;

static void png_to_memory(png_structp png, png_bytep data, png_size_t n)
{
    membuf *b = png_get_io_ptr(png);
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np)
            png_error(png, "out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void png_flush_nothing(png_structp png)
{
    (void)png;
}

static void png_fail(png_structp png, png_const_charp msg)
{
    tool_die("%s: cannot write PNG (%s)", (const char *)png_get_error_ptr(png), msg);
}

/* PNG in memory first, so the file is written whole or not at all. */
static int write_png(const char *path, const uint8_t *rgb, int w, int h, int bits)
{
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, (void *)path, png_fail, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info)
        tool_die("out of memory");
    png_set_write_fn(png, &b, png_to_memory, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bits, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bits == 16) {
        const uint16_t one = 1;
        if (*(const uint8_t *)&one == 1)
            png_set_swap(png); /* PNG is big-endian; the library's samples are native */
    }
    size_t row = (size_t)w * 3 * (bits / 8);
    for (int y = 0; y < h; y++)
        png_write_row(png, rgb + row * y);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    const void *parts[1] = {b.p};
    size_t sizes[1] = {b.len};
    int rc = tool_write_file(path, parts, sizes, 1);
    free(b.p);
    return rc;
}

/* bpgdec's rule: PNG unless the name has no '.' or ends in ".ppm" (any case). */
static int wants_png(const char *out)
{
    const char *dot = strrchr(out, '.');
    return dot && strcasecmp(dot + 1, "ppm") != 0;
}

int main(int argc, char **argv)
{
    tool_name = "npp-bpgdec";
    static const struct option LONG_OPTS[] = {{"verify", no_argument, NULL, 'V'},
                                              {"max-pixels", required_argument, NULL, 'M'},
                                              {NULL, 0, NULL, 0}};
    const char *out = "out.png", *b_arg = NULL;
    int bits = 8, info_only = 0, flags = 0, c;
    unsigned long long max_pixels = 0; /* 0: NPP_BPG_DEFAULT_MAX_PIXELS */
    opterr = 0;
    while ((c = getopt_long_only(argc, argv, ":ho:b:i", LONG_OPTS, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
        case 'o':
            out = optarg;
            break;
        case 'b':
            b_arg = optarg;
            bits = tool_int("-b", optarg, 0, 64, "the bit depth");
            break;
        case 'i':
            info_only = 1;
            break;
        case 'V':
            flags = NPP_BPG_DECODE_VERIFY;
            break;
        case 'M': {
            char *end = NULL;
            max_pixels = strtoull(optarg, &end, 10);
            if (!*optarg || *end)
                tool_die("-max-pixels %s: expected a number of pixels (0 = the default limit)", optarg);
            break;
        }
        default:
            tool_bad_option(c, argv, LONG_OPTS);
        }
    }
    if (optind >= argc)
        help();
    const char *in = argv[optind];
    if (optind + 1 < argc)
        tool_die("unexpected argument %s after the input file %s", argv[optind + 1], in);
    int png = wants_png(out);
    if (!info_only && png && bits != 8 && bits != 16)
        tool_die("-b %s: only bit_depth = 8 or 16 are supported for PNG output", b_arg);
    if (!info_only && !png && bits != 8)
        tool_die("-b %s: PPM output is 8-bit only (bpgdec writes 8 bits whatever -b says; "
                 "use a .png name for 16 bits)", b_arg);

    size_t len = 0;
    uint8_t *data = tool_read_file(in, MAX_FILE_BYTES, &len);
    if (!data)
        tool_die("%s: cannot read (%s)", in, strerror(errno));
    if (info_only) {
        show_info(in, data, len);
        free(data);
        return 0;
    }
    npp_bpg_info info;
    char *err = NULL;
    if (npp_bpg_get_info(data, len, &info, &err) == NPP_BPG_OK && (info.has_alpha || info.alpha2))
        tool_die("%s: the image has an %s plane, which npp-bpgdec cannot decode (bpgdec would "
                 "write RGBA)", in, info.has_alpha ? "alpha" : "alpha (W, CMYK)");
    npp_bpg_free(err);
    err = NULL;
    uint8_t *rgb = NULL;
    size_t n = 0;
    int rc = npp_bpg_decode(data, len, bits, flags, max_pixels, &rgb, &n, &info, &err);
    free(data);
    if (rc) {
        const char *msg = err ? err : "decoding failed";
        tool_die("%s: could not decode image (%s)", in, strncmp(msg, "bpg: ", 5) ? msg : msg + 5);
    }
    rc = png ? write_png(out, rgb, info.width, info.height, bits)
             : write_ppm(out, rgb, info.width, info.height);
    npp_bpg_free(rgb);
    if (rc)
        tool_die("%s: cannot write (%s)", out, strerror(errno));
    return 0;
}
