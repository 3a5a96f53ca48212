/* SPDX-License-Identifier: GPL-2.0-or-later
 * npp-bpgenc: libbpg 0.9.8's bpgenc on libnpp_bpg, for the scripts and tools that run
 * bpgenc (CompressAI's bench codec, the paper's code). Same options, defaults and parsing
 * (getopt_long_only with bpgenc's option table: -q28, --hash and unique abbreviations work
 * as there), same exit status (1 for every error and for -h). What libnpp_bpg cannot code
 * (alpha, animations, 16-bit samples, CMYK, HEVC encoders other than x265) stops with a
 * one-line error naming it: nothing that would change the output is ignored.
 *
 * Input is read as bpgenc's read_png/read_jpeg do:
 * - PNG: palette expanded to RGB, gray below 8 bits expanded, gray stays gray (-f and -c
 *   do not apply); -premul sets libpng's alpha mode as bpgenc does (which linearises the
 *   colours of a file with a gAMA/sRGB chunk, even without alpha).
 * - JPEG: the file's own colour space and chroma layout: gray stays gray, an RGB JPEG is
 *   coded as RGB, a 4:2:0 or 4:2:2 YCbCr JPEG keeps that layout (-f applies to 4:4:4 ones
 *   only), -c and -limitedrange do not apply. Gray and RGB JPEGs give bpgenc's planes
 *   exactly; YCbCr ones are decoded to RGB first (libnpp_bpg takes RGB), so they come out
 *   close to bpgenc's file, not identical: a note on stderr says so.
 * Our additions: -fast (level 0, the training-loop setting) and -f gray. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h */
#include <png.h>

#include "bpg_internal.h" /* read_ue7: the tools link the library's objects */
#include "npp_bpg.h"
#include "tool_util.h"

/* ---- options --------------------------------------------------------------------- */

typedef struct {
    const char *in, *out;
    npp_bpg_encode_params p; /* p.pixel_format is bpgenc's "preferred" chroma format */
    int keep_metadata, premul, verbose;
} options;

enum {
    OPT_HASH = 256, OPT_KEEPMETADATA, OPT_ALPHAQ, OPT_LOSSLESS, OPT_LIMITEDRANGE, OPT_PREMUL,
    OPT_LOOP, OPT_FPS, OPT_DELAYFILE, OPT_FAST
};

/* bpgenc 0.9.8's long options (in its order), then ours. */
static const struct option LONG_OPTS[] = {
    {"hash", no_argument, NULL, OPT_HASH},
    {"keepmetadata", no_argument, NULL, OPT_KEEPMETADATA},
    {"alphaq", required_argument, NULL, OPT_ALPHAQ},
    {"lossless", no_argument, NULL, OPT_LOSSLESS},
    {"limitedrange", no_argument, NULL, OPT_LIMITEDRANGE},
    {"premul", no_argument, NULL, OPT_PREMUL},
    {"loop", required_argument, NULL, OPT_LOOP},
    {"fps", required_argument, NULL, OPT_FPS},
    {"delayfile", required_argument, NULL, OPT_DELAYFILE},
    {"fast", no_argument, NULL, OPT_FAST},
    {NULL, 0, NULL, 0},
};

static const char *const FORMATS[6] = {"gray", "420", "422", "444", "420_video", "422_video"};
static const char *const SPACES[5] = {"ycbcr", "rgb", "ycgco", "ycbcr_bt709", "ycbcr_bt2020"};

static _Noreturn void help(int full)
{
    printf("BPG Image Encoder version %s\n"
           "npp-bpgenc: the command line of bpgenc 0.9.8 on libnpp_bpg (npp_plugin)\n"
           "usage: npp-bpgenc [options] infile.[jpg|png]\n"
           "\n"
           "Main options:\n"
           "-h                   show the full help (including the advanced options)\n"
           "-o outfile           set output filename (default = out.bpg)\n"
           "-q qp                set quantizer parameter (smaller gives better quality,\n"
           "                     range: 0-51, default = 29)\n"
           "-f cfmt              set the preferred chroma format (420, 422, 444,\n"
           "                     420_video, 422_video; npp: gray; default=420)\n"
           "-c color_space       set the preferred color space (ycbcr, rgb, ycgco,\n"
           "                     ycbcr_bt709, ycbcr_bt2020, default=ycbcr)\n"
           "-b bit_depth         set the bit depth (8, 10 or 12, default = 8)\n"
           "-lossless            enable lossless mode\n"
           "-e encoder           select the HEVC encoder (x265, default = x265)\n"
           "-m level             select the compression level (1=fast, 9=slow, default = 8)\n"
           "-fast                npp: the training-loop setting (x265 ultrafast, 16x16 CTUs)\n"
           "\n"
           "Animation options (not supported: -a stops with an error):\n"
           "-a                   generate animations from a sequence of images\n"
           "-fps N               set the frame rate (default = 25)\n"
           "-loop N              set the number of times the animation is played\n"
           "-delayfile file      text file with the display delay per image (centiseconds)\n",
           npp_bpg_version());
    if (full)
        printf("\nAdvanced options:\n"
               "-alphaq              set quantizer parameter for the alpha channel (default = "
               "same as -q value)\n"
               "-premul              store the color with premultiplied alpha\n"
               "-limitedrange        encode the color data with the limited range of video\n"
               "-hash                include MD5 hash in HEVC bitstream\n"
               "-keepmetadata        keep the metadata (from JPEG: EXIF, ICC profile, XMP, "
               "from PNG: ICC profile)\n"
               "-v                   show debug messages\n"
               "\n"
               "\n"
               "Not supported (a one-line error names it): alpha channels (-alphaq is only "
               "checked;\n-premul still sets bpgenc's libpng alpha mode), animations, 16-bit "
               "PNG, CMYK JPEG,\nHEVC encoders other than x265. YCbCr JPEGs are coded through "
               "RGB (close to bpgenc's\nfile, not identical).\n");
    exit(1); /* as bpgenc */
}

static int lookup(const char *option, const char *v, const char *const *names, int n,
                  const char *what)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i]))
            return i;
    tool_die("%s %s: invalid %s", option, v, what);
}

static void parse(int argc, char **argv, options *o)
{
    o->out = "out.bpg";
    npp_bpg_default_params(&o->p);
    opterr = 0;
    int c;
    while ((c = getopt_long_only(argc, argv, ":q:o:hf:c:vm:b:e:a", LONG_OPTS, NULL)) != -1) {
        switch (c) {
        case 'q':
            o->p.qp = tool_int("-q", optarg, 0, 51, "qp");
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'f':
            o->p.pixel_format = lookup("-f", optarg, FORMATS, 6,
                                       "chroma format (420, 422, 444, 420_video, 422_video)");
            break;
        case 'c':
            o->p.color_space = lookup("-c", optarg, SPACES, 5,
                                      "color space (ycbcr, rgb, ycgco, ycbcr_bt709, ycbcr_bt2020)");
            if (o->p.color_space == NPP_BPG_CS_RGB)
                o->p.pixel_format = NPP_BPG_FORMAT_444;
            break;
        case 'm': { /* bpgenc clamps the level to 1..9 */
            int m = tool_int("-m", optarg, -1000000, 1000000, "the level");
            o->p.level = m < 1 ? 1 : m > 9 ? 9 : m;
            break;
        }
        case 'b':
            o->p.bit_depth = tool_int("-b", optarg, 8, 12, "the bit depth");
            if (o->p.bit_depth & 1)
                tool_die("-b %s: x265 supports bit depths of 8, 10 or 12", optarg);
            break;
        case 'v':
            o->verbose++;
            break;
        case 'e':
            if (strcmp(optarg, "x265"))
                tool_die("-e %s: unsupported HEVC encoder; the only one here is x265", optarg);
            break;
        case 'a':
            tool_die("-a: animations are not supported (libnpp_bpg codes one still picture)");
        case 'h':
            help(1);
        case OPT_HASH:
            o->p.hash = 1;
            break;
        case OPT_KEEPMETADATA:
            o->keep_metadata = 1;
            break;
        case OPT_ALPHAQ: /* only for an alpha plane, which stops with an error anyway */
            tool_int("-alphaq", optarg, 0, 51, "alpha_qp");
            break;
        case OPT_LOSSLESS: /* as bpgenc: later -c/-f/-b/-limitedrange override these */
            o->p.lossless = 1;
            o->p.color_space = NPP_BPG_CS_RGB;
            o->p.pixel_format = NPP_BPG_FORMAT_444;
            o->p.bit_depth = 8;
            o->p.limited_range = 0;
            break;
        case OPT_LIMITEDRANGE:
            o->p.limited_range = 1;
            break;
        case OPT_PREMUL:
            o->premul = 1;
            break;
        case OPT_LOOP: /* -loop, -fps, -delayfile only act with -a */
            tool_int("-loop", optarg, 0, 65535, "the loop count");
            break;
        case OPT_FPS:
            tool_int("-fps", optarg, 1, 65535, "the frame rate");
            break;
        case OPT_DELAYFILE:
            break;
        case OPT_FAST:
            o->p.level = NPP_BPG_LEVEL_FAST;
            break;
        default:
            tool_bad_option(c, argv, LONG_OPTS);
        }
    }
    if (optind >= argc)
        help(0);
    o->in = argv[optind];
    if (optind + 1 < argc)
        tool_die("unexpected argument %s after the input file %s", argv[optind + 1], o->in);
}

/* ---- metadata (extension records: tag ue7, length ue7, payload) -------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np)
            tool_die("out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

enum { TAG_EXIF = 1, TAG_ICCP = 2, TAG_XMP = 3 };

static void put_record(bytes *b, uint32_t tag, const uint8_t *payload, size_t n)
{
    uint8_t head[10];
    size_t k = 0;
    tool_put_ue7(head, &k, tag);
    tool_put_ue7(head, &k, (uint32_t)n);
    put(b, head, k);
    put(b, payload, n);
}

/* ---- input ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *pixels; /* interleaved 8-bit gray or RGB */
    int width, height, channels;
    int is_jpeg, jpeg_format, jpeg_space; /* JPEG: the layout and colour space to code */
    int through_rgb;                      /* a YCbCr JPEG, decoded to RGB for the library */
    bytes md;                             /* extension records for -keepmetadata */
} image;

static void check_size(const char *path, unsigned long w, unsigned long h)
{
    if (w < 1 || h < 1 || w > TOOL_MAX_DIM || h > TOOL_MAX_DIM ||
        (unsigned long long)w * h > TOOL_MAX_PIXELS)
        tool_die("%s: image size %lux%lu is out of range (1..%d per side, at most %u pixels)",
                 path, w, h, TOOL_MAX_DIM, TOOL_MAX_PIXELS);
}

/* libpng and libjpeg may end the process from their error handlers (their defaults do).
 * libpng often says why in a warning just before the error ("Image width exceeds user
 * limit" before "Invalid IHDR data"): the error line carries it. */
static char last_png_warning[200];

static void png_fail(png_structp png, png_const_charp msg)
{
    tool_die("%s: invalid or truncated PNG file (%s%s%s)", (const char *)png_get_error_ptr(png), msg,
             *last_png_warning ? ": " : "", last_png_warning);
}

static void png_warn(png_structp png, png_const_charp msg)
{
    (void)png; /* warnings alone (e.g. a known-bad sRGB profile) do not stop bpgenc */
    snprintf(last_png_warning, sizeof last_png_warning, "%s", msg);
}

static void read_png(FILE *f, const char *path, const options *o, image *img)
{
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, (void *)path, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info)
        tool_die("out of memory");
    png_set_user_limits(png, TOOL_MAX_DIM, TOOL_MAX_DIM);
    png_init_io(png, f);
    png_read_info(png, info);
    check_size(path, png_get_image_width(png, info), png_get_image_height(png, info));
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        tool_die("%s: the PNG has an alpha channel or transparency; npp-bpgenc codes no alpha "
                 "plane (save it without alpha)", path);
    if (depth == 16)
        tool_die("%s: 16-bit PNG input is not supported (libnpp_bpg codes 8-bit samples; "
                 "convert it to 8 bits)", path);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    else if (depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (o->premul) /* what bpgenc asks of libpng for -premul */
        png_set_alpha_mode(png, PNG_ALPHA_ASSOCIATED, PNG_GAMMA_LINEAR);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    img->width = (int)png_get_image_width(png, info);
    img->height = (int)png_get_image_height(png, info);
    img->channels = png_get_channels(png, info);
    size_t stride = (size_t)img->width * img->channels;
    if ((img->channels != 1 && img->channels != 3) || png_get_rowbytes(png, info) != stride)
        tool_die("%s: unexpected PNG layout after expansion", path);
    img->pixels = malloc(stride * img->height);
    png_bytep *rows = malloc(sizeof *rows * img->height);
    if (!img->pixels || !rows)
        tool_die("out of memory");
    for (int y = 0; y < img->height; y++)
        rows[y] = img->pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, info);
    png_charp name;
    int compression;
    png_bytep profile;
    png_uint_32 profile_len;
    if (o->keep_metadata &&
        png_get_iCCP(png, info, &name, &compression, &profile, &profile_len) == PNG_INFO_iCCP)
        put_record(&img->md, TAG_ICCP, profile, profile_len);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
}

static void jpeg_fail(j_common_ptr cinfo)
{
    char msg[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, msg);
    tool_die("%s: invalid or truncated JPEG file (%s)", (const char *)cinfo->client_data, msg);
}

/* libjpeg goes on after a warning. Where picture data is missing (a file cut short, a
 * damaged segment) it fills in gray: bpgenc codes that, we refuse the file. Other warnings
 * are printed once, as libjpeg's default handler does. */
static void jpeg_warn(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return; /* trace messages */
    char msg[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, msg);
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC)
        tool_die("%s: truncated or corrupt JPEG data (%s)", (const char *)cinfo->client_data,
                 msg);
    if (cinfo->err->num_warnings++ == 0)
        tool_note("%s: libjpeg: %s", (const char *)cinfo->client_data, msg);
}

/* EXIF and XMP in file order, then the ICC profile (bpgenc's jpeg_get_metadata). Unlike
 * bpgenc 0.9.8, which reads a chunk's index where its count belongs and so keeps only the
 * first chunk of a multi-chunk profile, all chunks are joined. */
static void jpeg_metadata(struct jpeg_decompress_struct *cinfo, bytes *md)
{
    static const char EXIF[6] = "Exif\0", XMP[29] = "http://ns.adobe.com/xap/1.0/",
                      ICC[12] = "ICC_PROFILE";
    int has_exif = 0, has_xmp = 0, icc_count = 0;
    jpeg_saved_marker_ptr icc[256] = {0};
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && !has_exif && m->data_length > sizeof EXIF &&
            !memcmp(m->data, EXIF, sizeof EXIF)) {
            put_record(md, TAG_EXIF, m->data + sizeof EXIF, m->data_length - sizeof EXIF);
            has_exif = 1;
        } else if (m->marker == JPEG_APP0 + 1 && !has_xmp && m->data_length > sizeof XMP &&
                   !memcmp(m->data, XMP, sizeof XMP)) {
            put_record(md, TAG_XMP, m->data + sizeof XMP, m->data_length - sizeof XMP);
            has_xmp = 1;
        } else if (m->marker == JPEG_APP0 + 2 && m->data_length > sizeof ICC + 2 &&
                   !memcmp(m->data, ICC, sizeof ICC)) {
            int index = m->data[sizeof ICC], count = m->data[sizeof ICC + 1];
            if (index == 0 || count == 0 || index > count || (icc_count && count != icc_count))
                continue;
            icc_count = count;
            icc[index - 1] = m;
        }
    }
    bytes profile = {0};
    for (int i = 0; i < icc_count; i++) {
        if (!icc[i]) { /* a chunk is missing: bpgenc drops the profile too */
            free(profile.p);
            return;
        }
        put(&profile, icc[i]->data + sizeof ICC + 2, icc[i]->data_length - sizeof ICC - 2);
    }
    if (icc_count)
        put_record(md, TAG_ICCP, profile.p, profile.len);
    free(profile.p);
}

static void read_jpeg(FILE *f, const char *path, const options *o, image *img)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jerr.error_exit = jpeg_fail;
    jerr.emit_message = jpeg_warn;
    jpeg_create_decompress(&cinfo);
    cinfo.client_data = (void *)path;
    if (o->keep_metadata) {
        jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
        jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xffff);
    }
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    check_size(path, cinfo.image_width, cinfo.image_height);
    uint32_t hv = 0;
    for (int i = 0; i < cinfo.num_components && i < 4; i++)
        hv |= (uint32_t)(cinfo.comp_info[i].h_samp_factor << 4 | cinfo.comp_info[i].v_samp_factor)
              << (8 * i);
    img->is_jpeg = 1;
    img->jpeg_format = -1; /* the preferred format */
    img->jpeg_space = NPP_BPG_CS_YCBCR;
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE && cinfo.num_components == 1) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (cinfo.jpeg_color_space == JCS_YCbCr && cinfo.num_components == 3) {
        cinfo.out_color_space = JCS_RGB;
        if (hv == 0x111121)
            img->jpeg_format = NPP_BPG_FORMAT_422;
        else if (hv == 0x111122)
            img->jpeg_format = NPP_BPG_FORMAT_420;
        img->through_rgb = 1;
    } else if (cinfo.jpeg_color_space == JCS_RGB && cinfo.num_components == 3) {
        cinfo.out_color_space = JCS_RGB;
        img->jpeg_space = NPP_BPG_CS_RGB;
    } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        tool_die("%s: CMYK JPEG input is not supported (bpgenc codes it with a W plane, which "
                 "libnpp_bpg cannot)", path);
    } else {
        tool_die("%s: unsupported JPEG (colour space %d, %d components)", path,
                 (int)cinfo.jpeg_color_space, cinfo.num_components);
    }
    jpeg_start_decompress(&cinfo);
    img->width = (int)cinfo.output_width;
    img->height = (int)cinfo.output_height;
    img->channels = cinfo.output_components;
    size_t stride = (size_t)img->width * img->channels;
    img->pixels = malloc(stride * img->height);
    if (!img->pixels)
        tool_die("out of memory");
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = img->pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (o->keep_metadata)
        jpeg_metadata(&cinfo, &img->md);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
}

static void load(const options *o, image *img)
{
    FILE *f = fopen(o->in, "rb");
    if (!f)
        tool_die("%s: cannot open (%s)", o->in, strerror(errno));
    uint8_t sig[8] = {0};
    size_t n = fread(sig, 1, sizeof sig, f);
    rewind(f);
    if (n == 8 && !png_sig_cmp(sig, 0, 8))
        read_png(f, o->in, o, img);
    else if (n >= 3 && sig[0] == 0xff && sig[1] == 0xd8 && sig[2] == 0xff)
        read_jpeg(f, o->in, o, img);
    else
        tool_die("%s: not a PNG or JPEG file", o->in);
    fclose(f);
}

/* ---- output ----------------------------------------------------------------------- */

/* What bpgenc would code for this image, from the options and the input. */
static npp_bpg_encode_params effective(const options *o, const image *img)
{
    npp_bpg_encode_params p = o->p;
    if (img->is_jpeg) {
        p.color_space = img->jpeg_space;
        p.limited_range = 0;
        if (img->jpeg_format >= 0 && p.pixel_format != NPP_BPG_FORMAT_GRAY)
            p.pixel_format = img->jpeg_format;
    }
    if (img->channels == 3 && p.color_space == NPP_BPG_CS_RGB &&
        p.pixel_format != NPP_BPG_FORMAT_GRAY)
        p.pixel_format = NPP_BPG_FORMAT_444; /* bpgenc never decimates RGB */
    /* -q has no effect with -lossless: the library codes lossless pictures at x265's QP 4. */
    if (img->channels == 1) { /* gray input is coded gray in YCbCr (as the library does) */
        p.pixel_format = NPP_BPG_FORMAT_GRAY;
        p.color_space = NPP_BPG_CS_YCBCR;
    }
    return p;
}

int main(int argc, char **argv)
{
    tool_name = "npp-bpgenc";
    options o = {0};
    parse(argc, argv, &o);
    image img = {0};
    load(&o, &img);
    npp_bpg_encode_params p = effective(&o, &img);
    uint8_t *bpg = NULL;
    size_t len = 0;
    char *err = NULL;
    int rc = npp_bpg_encode(img.pixels, img.width, img.height, img.channels,
                            (ptrdiff_t)img.width * img.channels, &p, &bpg, &len, &err);
    free(img.pixels);
    if (rc) {
        const char *msg = err ? err : "encoding failed";
        tool_die("%s: %s", o.in, strncmp(msg, "bpg: ", 5) ? msg : msg + 5);
    }
    /* The library writes bpgenc's header without extensions: magic, two flag bytes, then
     * width, height and picture_data_length as ue7. Metadata goes in after them, with
     * extension_present_flag set (FORMAT.md section 3). */
    uint8_t head[32];
    size_t head_len = 6, pos = 6;
    uint32_t v;
    for (int k = 0; k < 3; k++)
        if (read_ue7(bpg, len, &pos, &v))
            tool_die("internal error: unexpected BPG header from libnpp_bpg");
    head_len = pos;
    memcpy(head, bpg, head_len);
    if (img.md.len) {
        head[5] |= 0x08;
        tool_put_ue7(head, &head_len, (uint32_t)img.md.len);
    }
    const void *parts[3] = {head, img.md.p, bpg + pos};
    size_t sizes[3] = {head_len, img.md.len, len - pos};
    if (tool_write_file(o.out, parts, sizes, 3))
        tool_die("%s: cannot write (%s)", o.out, strerror(errno));
    if (img.through_rgb)
        tool_note("note: %s: a YCbCr JPEG is coded through RGB here (bpgenc codes its YCbCr "
                  "planes as they are), so the file is close to bpgenc's, not identical", o.in);
    if (o.verbose)
        tool_note("%s -> %s: %dx%d, %s %s, %d bit%s, qp %d, level %d%s%s, %zu bytes%s", o.in,
                  o.out, img.width, img.height, FORMATS[p.pixel_format], SPACES[p.color_space],
                  p.bit_depth, p.limited_range ? " limited range" : "", p.qp, p.level,
                  p.lossless ? ", lossless" : "", p.hash ? ", MD5 hash" : "",
                  head_len + img.md.len + len - pos,
                  img.md.len ? " (with metadata)" : "");
    npp_bpg_free(bpg);
    free(img.md.p);
    return 0;
}
