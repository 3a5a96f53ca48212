/* SPDX-License-Identifier: GPL-2.0-or-later
 * BPG encoder on libx265, driven as bpgenc's x265_glue.c does (FORMAT.md 7-9).
 *
 * An npp_bpg_encoder keeps one x265 instance open while the picture size and format
 * stay the same: opening x265 costs more than encoding a small picture, and x265 3.5
 * leaks about 1-2 kB per x265_encoder_open (an x265_param it never frees, plus SAO
 * buffers when SAO is off). The QP is set per picture (x265_picture.forceqp) to the
 * I-slice QP that x265's constant-QP mode derives from rc.qp, so output does not
 * depend on what the instance encoded before. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <x265.h>

#include "bpg_internal.h"

/* x265 initialises process-wide tables (CPU primitives, scan orders) inside
 * x265_encoder_open without locking, so concurrent opens race. This mutex only
 * serialises open/close; encoding itself runs in parallel. It holds no data (the only
 * other process-wide state is the once-per-bit-depth lambda decision, bpg_lambda.c). */
static pthread_mutex_t x265_open_lock = PTHREAD_MUTEX_INITIALIZER;

/* bpgenc -m 1..9 -> x265_preset_names[m]; our level 0 -> "ultrafast" (with CTU 16). */
static const char *const PRESETS[10] = {"ultrafast", "superfast", "veryfast", "faster", "fast",
                                        "medium",    "slow",      "slower",   "veryslow",
                                        "placebo"};

static int check_params(const npp_bpg_encode_params *p, int width, int height, int channels,
                        char **errmsg)
{
#define BAD(argument, ...) return bpg_fail_arg(errmsg, argument, __VA_ARGS__)
    if (width < 1 || height < 1 || width > BPG_MAX_DIM || height > BPG_MAX_DIM)
        BAD("image", "bpg: image size %dx%d is out of range 1..%d per side", width, height, BPG_MAX_DIM);
    if (channels != 1 && channels != 3)
        BAD("channels", "bpg: channels=%d is not supported; use 1 (gray) or 3 (RGB)", channels);
    if (p->qp < 0 || p->qp > 51)
        BAD("qp", "bpg: qp=%d is out of range 0..51", p->qp);
    if (p->pixel_format < 0 || p->pixel_format > 5)
        BAD("pixel_format", "bpg: pixel_format=%d is out of range 0..5", p->pixel_format);
    if (p->bit_depth != 8 && p->bit_depth != 10 && p->bit_depth != 12)
        BAD("bit_depth", "bpg: bit_depth=%d is not supported; use 8, 10 or 12", p->bit_depth);
    if (p->color_space < 0 || p->color_space > 4)
        BAD("color_space", "bpg: color_space=%d is out of range 0..4", p->color_space);
    if (p->level < 0 || p->level > 9)
        BAD("level", "bpg: level=%d is out of range 0..9", p->level);
    if (p->pixel_format == NPP_BPG_FORMAT_GRAY && p->color_space == NPP_BPG_CS_RGB &&
        channels == 3)
        BAD("color_space", "bpg: gray output needs a YCbCr or YCgCo color space, not rgb");
    if (p->color_space == NPP_BPG_CS_RGB && p->pixel_format != NPP_BPG_FORMAT_444 &&
        p->pixel_format != NPP_BPG_FORMAT_GRAY)
        BAD("pixel_format", "bpg: color space rgb requires 4:4:4 chroma (as bpgenc -c rgb)");
    /* x265 needs at least one CTU's worth of rows/cols it can search; tiny pictures are
     * padded to 8 anyway, which x265 3.5 handles. */
    return NPP_BPG_OK;
#undef BAD
}

typedef struct {
    bpg_buf nals;      /* kept NAL units, Annex-B, first start code dropped */
    bpg_hevc_header hdr;
    bpg_pps pps;
    int have_sps;
    int width, height;     /* true picture size */
    int chroma_format_idc;
} stream_out;

/* Keep PPS/slices/SEI; turn the SPS into the compact header; drop the VPS. */
static int collect(stream_out *so, const x265_nal *nal, uint32_t n, int B, char **errmsg)
{
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = nal[i].payload;
        size_t len = nal[i].sizeBytes, sc = 0;
        while (sc < len && p[sc] == 0)
            sc++;
        if (sc < 2 || sc >= len || p[sc] != 1)
            return bpg_fail(errmsg, NPP_BPG_ERR_ENCODER, "bpg: x265 NAL without start code");
        sc++;
        if (nal[i].type == 32) /* VPS */
            continue;
        if (nal[i].type == 33) { /* SPS */
            int rc = bpg_hevc_header_from_sps(p + sc, len - sc, so->width, so->height, B,
                                              &so->hdr, errmsg);
            if (rc)
                return rc;
            so->have_sps = 1;
            continue;
        }
        if (nal[i].type == 34) /* PPS: needed to find a field in the slice headers */
            bpg_parse_pps(p + sc, len - sc, &so->pps);
        if (so->nals.len != 0) /* the first start code is removed */
            buf_put(&so->nals, p, sc);
        if (nal[i].type > 31 || !bpg_canonical_slice(p + sc, len - sc, &so->pps, so->hdr.sao,
                                                     so->chroma_format_idc, &so->nals))
            buf_put(&so->nals, p + sc, len - sc);
    }
    return NPP_BPG_OK;
}

struct npp_bpg_encoder {
    npp_bpg_encode_params params; /* qp unused: it is per picture */
    const x265_api *api;
    x265_param *param;
    x265_encoder *enc;
    x265_picture *pic;
    int W8, H8, pixel_format; /* what the open x265 instance codes */
    double ip_offset;         /* x265: 6 log2(ipFactor) */
    pid_t x265_tids[4];       /* the threads x265 started for this instance */
    int n_x265_tids;
};

/* Keeping x265 on the caller's CPU.
 *
 * x265 encodes each picture in a thread of its own (its FrameEncoder) while the calling
 * thread waits, and hands control back and forth several times per picture. When the two
 * threads sit on different CPUs, every hand-off wakes an idle CPU; on the virtual
 * machines measured here that made an encode about 1.5x slower than with both threads on
 * one CPU (256x256 at the fast setting). So during an encode the caller is pinned to the
 * CPU it is on and x265's threads are moved there; afterwards the caller's own CPU mask is
 * restored (x265's threads sleep until the next encode moves them again). Where affinity
 * calls are not allowed this silently does nothing: only speed depends on it.
 *
 * x265's threads are recognised by name: the caller takes a temporary name while x265
 * starts them, new threads inherit it, and no other thread can be started with it. */
#define X265_THREAD_NAME "npp-bpg-x265"

static FILE *open_comm(pid_t tid, const char *mode)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    return fopen(path, mode);
}

static int read_comm(pid_t tid, char *name, size_t n)
{
    FILE *f = open_comm(tid, "r");
    if (!f)
        return -1;
    int ok = fgets(name, (int)n, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    name[strcspn(name, "\n")] = 0;
    return 0;
}

static void find_x265_threads(npp_bpg_encoder *e)
{
    e->n_x265_tids = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    pid_t self = (pid_t)gettid();
    struct dirent *ent;
    while ((ent = readdir(d)) && e->n_x265_tids < 4) {
        pid_t tid = (pid_t)atoi(ent->d_name);
        char name[32];
        if (tid > 0 && tid != self && !read_comm(tid, name, sizeof name) &&
            !strcmp(name, X265_THREAD_NAME))
            e->x265_tids[e->n_x265_tids++] = tid;
    }
    closedir(d);
    /* now that we know them, a neutral name, so a later open cannot count them again */
    for (int k = 0; k < e->n_x265_tids; k++) {
        FILE *f = open_comm(e->x265_tids[k], "w");
        if (f) {
            fputs("x265", f);
            fclose(f);
        }
    }
}

typedef struct {
    cpu_set_t saved;
    int pinned;
} cpu_pin;

static void pin_to_current_cpu(const npp_bpg_encoder *e, cpu_pin *pin)
{
    pin->pinned = 0;
    int cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE || e->n_x265_tids == 0 ||
        pthread_getaffinity_np(pthread_self(), sizeof pin->saved, &pin->saved))
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one))
        return;
    pin->pinned = 1;
    for (int k = 0; k < e->n_x265_tids; k++)
        (void)sched_setaffinity(e->x265_tids[k], sizeof one, &one);
}

static void unpin(cpu_pin *pin)
{
    if (pin->pinned)
        (void)pthread_setaffinity_np(pthread_self(), sizeof pin->saved, &pin->saved);
}

static void close_x265(npp_bpg_encoder *e)
{
    if (!e->api)
        return;
    pthread_mutex_lock(&x265_open_lock);
    if (e->enc)
        e->api->encoder_close(e->enc);
    pthread_mutex_unlock(&x265_open_lock);
    if (e->pic)
        e->api->picture_free(e->pic);
    if (e->param)
        e->api->param_free(e->param);
    e->enc = NULL;
    e->pic = NULL;
    e->param = NULL;
    e->W8 = e->H8 = 0;
    e->n_x265_tids = 0;
}

static int open_x265(npp_bpg_encoder *e, int W8, int H8, int pixel_format, int width, int height,
                     char **errmsg)
{
    const npp_bpg_encode_params *prm = &e->params;
    const int B = prm->bit_depth;
    int rc = NPP_BPG_OK;
    close_x265(e);
    if ((rc = bpg_x265_lambda(B, NULL, errmsg))) /* x265's tables settled before it opens */
        return rc;
    pthread_mutex_lock(&x265_open_lock);
    const x265_api *api = e->api = x265_api_get(B);
    if (!api) {
        pthread_mutex_unlock(&x265_open_lock);
        return bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,
                        "bpg: this libx265 has no %d-bit encoder (x265_api_get(%d) is NULL)", B, B);
    }
    x265_param *param = e->param = api->param_alloc();
    e->pic = api->picture_alloc();
    if (!param || !e->pic) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory (x265 param/picture)");
        goto done;
    }
    if (api->param_default_preset(param, PRESETS[prm->level], "ssim") < 0) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_ENCODER, "bpg: x265 rejected preset %s",
                      PRESETS[prm->level]);
        goto done;
    }
    static const int CSP[6] = {X265_CSP_I400, X265_CSP_I420, X265_CSP_I422,
                               X265_CSP_I444, X265_CSP_I420, X265_CSP_I422};
    param->logLevel = X265_LOG_NONE;
    param->internalCsp = CSP[pixel_format];
    param->internalBitDepth = B;
    param->sourceWidth = W8;
    param->sourceHeight = H8;
    param->fpsNum = 25;
    param->fpsDenom = 1;
    param->keyframeMax = 1; /* every picture an IDR, as bpgenc's stills */
    param->bRepeatHeaders = 1;
    param->bEmitInfoSEI = 0;
    param->decodedPictureHashSEI = prm->hash ? 1 : 0;
    param->bEnableRectInter = 1;
    param->bEnableAMP = 1; /* the compact header hard-codes amp_enabled_flag = 1 */
    param->rc.rateControlMode = X265_RC_CQP;
    param->rc.qp = 29;     /* unused: every picture carries forceqp */
    param->bLossless = prm->lossless ? 1 : 0;
    /* CTU and minimum CU come from the preset as in bpgenc (CTU 32 for levels 1..2, else
     * 64; minimum CU 8). The fast level takes "ultrafast" (minimum CU 16) with a 16x16
     * CTU, so every CU is 16x16 and x265 makes no split decisions: about 45 % less time
     * than ultrafast's CTU 32 for about 1 % of BD-rate (up to 2.2 MP, below). Any minimum CU is valid BPG:
     * decoders round the picture size up to it, and x265 extends our 8-padded picture to
     * it by edge replication, the same padding. x265 needs at least one CTU per side, so
     * small pictures get a smaller CTU. */
    /* HEVC allows a 16x16 CTB only up to level 4.1 (2228224 luma samples; A.4.1): x265
     * refuses larger pictures (rounded up to its 16x16 CUs) with it, so they take ultrafast's own CTU 32. */
    if (prm->level == NPP_BPG_LEVEL_FAST && (uint64_t)((W8 + 15) & ~15) * (uint64_t)((H8 + 15) & ~15) <= 2228224u)
        param->maxCUSize = 16;
    while (param->maxCUSize > 16 && ((uint32_t)W8 < param->maxCUSize ||
                                     (uint32_t)H8 < param->maxCUSize))
        param->maxCUSize >>= 1;
    if (param->minCUSize > param->maxCUSize)
        param->minCUSize = param->maxCUSize;
    /* ... and the transform tree must fit the smaller CTU: x265 refuses a TU depth above
     * log2(CTU) - 1 (placebo's 4 with a 16x16 CTU; found by fuzz_encode). */
    if (param->maxTUSize > param->maxCUSize)
        param->maxTUSize = param->maxCUSize;
    uint32_t max_tu_depth = 0;
    for (uint32_t s = param->maxCUSize < 32 ? param->maxCUSize : 32; s > 2; s >>= 1)
        max_tu_depth++; /* log2(min(CTU, 32)) - 2 + 1 */
    if (param->tuQTMaxIntraDepth > max_tu_depth)
        param->tuQTMaxIntraDepth = max_tu_depth;
    if (param->tuQTMaxInterDepth > max_tu_depth)
        param->tuQTMaxInterDepth = max_tu_depth;
    if ((uint32_t)W8 < param->maxCUSize || (uint32_t)H8 < param->maxCUSize) {
        rc = bpg_fail_arg(errmsg, "image",
                      "bpg: a %dx%d picture is too small for x265 (at least 9 pixels per side)",
                      width, height);
        goto done;
    }
    /* One picture per call, parallelism across calls: no x265 thread pool, one frame
     * thread, no lookahead or B-frames, so each picture comes out of its own call. */
    param->frameNumThreads = 1;
    param->numaPools = "none";
    param->lookaheadThreads = 0;
    param->bEnableWavefront = 0;
    param->lookaheadDepth = 0;
    param->bframes = 0;
    e->ip_offset = 6.0 * log2(param->rc.ipFactor);
    api->picture_init(param, e->pic);
    char own_name[32] = "";
    int renamed = prctl(PR_GET_NAME, own_name) == 0 && prctl(PR_SET_NAME, X265_THREAD_NAME) == 0;
    e->enc = api->encoder_open(param);
    if (renamed) {
        prctl(PR_SET_NAME, own_name);
        if (e->enc)
            find_x265_threads(e);
    }
    if (!e->enc)
        rc = bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,
                      "bpg: x265_encoder_open failed (%dx%d, %d bit, csp %d, preset %s)", W8, H8,
                      B, param->internalCsp, PRESETS[prm->level]);
done:
    pthread_mutex_unlock(&x265_open_lock);
    if (rc) {
        close_x265(e);
        return rc;
    }
    e->W8 = W8;
    e->H8 = H8;
    e->pixel_format = pixel_format;
    return NPP_BPG_OK;
}

#define BPG_LOSSLESS_QP 4 /* the I-slice QP x265 forces in lossless mode (FORMAT.md, bLossless) */

/* The I-slice QP x265's constant-QP mode uses for rc.qp = qp (ratecontrol.cpp). */
static int intra_qp(const npp_bpg_encoder *e, int qp)
{
    if (qp == 0)
        return 0;
    int q = (int)(qp - e->ip_offset + 0.5);
    return q < 0 ? 0 : q;
}

static int encode_planes(npp_bpg_encoder *e, bpg_plane planes[3], int qp, stream_out *so,
                         char **errmsg)
{
    const int B = e->params.bit_depth;
    const x265_api *api = e->api;
    x265_picture *pic = e->pic;
    void *packed[3] = {NULL, NULL, NULL};
    int rc = NPP_BPG_OK;
    /* x265's 8-bit build reads uint8 planes, the high-depth builds uint16. */
    int nplanes = e->pixel_format == NPP_BPG_FORMAT_GRAY ? 1 : 3;
    for (int k = 0; k < 3; k++) {
        pic->planes[k] = NULL;
        pic->stride[k] = 0;
    }
    for (int k = 0; k < nplanes; k++) {
        bpg_plane *pl = &planes[k];
        if (B == 8) {
            uint8_t *q = malloc((size_t)pl->w * pl->h + BPG_X265_INPUT_SLACK);
            if (q)
                memset(q + (size_t)pl->w * pl->h, 0, BPG_X265_INPUT_SLACK);
            if (!q) {
                rc = bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
                goto out;
            }
            for (size_t i = 0, n = (size_t)pl->w * pl->h; i < n; i++)
                q[i] = (uint8_t)pl->p[i];
            free(pl->p); /* the 16-bit plane is not read again: 24 MB less at 12 MP */
            pl->p = NULL;
            packed[k] = q;
            pic->planes[k] = q;
            pic->stride[k] = pl->w;
        } else {
            pic->planes[k] = pl->p;
            pic->stride[k] = (int)(pl->w * sizeof(uint16_t));
        }
    }
    pic->bitDepth = B;
    pic->colorSpace = e->param->internalCsp;
    /* forceqp is QP + 1 (0 = none). Lossless: x265's own constant-QP lossless mode uses QP 4 for
     * its mode decisions (bpgenc -lossless ignores -q), so the QP argument must not change the file. */
    pic->forceqp = (e->params.lossless ? BPG_LOSSLESS_QP : intra_qp(e, qp)) + 1;
    x265_nal *nal;
    uint32_t nnal = 0;
    cpu_pin pin;
    pin_to_current_cpu(e, &pin);
    int ret = api->encoder_encode(e->enc, &nal, &nnal, pic, NULL);
    unpin(&pin);
    if (ret != 1) {
        rc = bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,
                      "bpg: x265_encoder_encode returned %d (expected one picture)", ret);
        goto out;
    }
    if ((rc = collect(so, nal, nnal, B, errmsg)))
        goto out;
    if (!so->have_sps || so->nals.len == 0)
        rc = bpg_fail(errmsg, NPP_BPG_ERR_ENCODER, "bpg: x265 produced no SPS or no picture");
    else if (so->nals.oom)
        rc = bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
out:
    for (int k = 0; k < 3; k++)
        free(packed[k]);
    return rc;
}

NPP_API(void) npp_bpg_default_params(npp_bpg_encode_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->qp = 29;
    p->pixel_format = NPP_BPG_FORMAT_420;
    p->bit_depth = 8;
    p->color_space = NPP_BPG_CS_YCBCR;
    p->level = 8;
}

NPP_API(int) npp_bpg_encoder_new(const npp_bpg_encode_params *params, npp_bpg_encoder **enc,
                                 char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!params || !enc)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    *enc = NULL;
    int rc = check_params(params, 16, 16, 3, errmsg);
    if (rc)
        return rc;
    npp_bpg_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
    e->params = *params;
    *enc = e;
    return NPP_BPG_OK;
}

NPP_API(void) npp_bpg_encoder_free(npp_bpg_encoder *enc)
{
    if (!enc)
        return;
    close_x265(enc);
    free(enc);
}

NPP_API(int) npp_bpg_encoder_encode(npp_bpg_encoder *enc, const uint8_t *pixels, int width,
                                    int height, int channels, ptrdiff_t stride, int qp,
                                    uint8_t **out, size_t *out_len, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!enc || !pixels || !out || !out_len)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    *out = NULL;
    *out_len = 0;
    npp_bpg_encode_params p = enc->params;
    p.qp = qp;
    int rc = check_params(&p, width, height, channels, errmsg);
    if (rc)
        return rc;
    if (stride < (ptrdiff_t)width * channels)
        return bpg_fail_arg(errmsg, "stride", "bpg: stride %td is below width*channels %d",
                        stride, width * channels);
    /* Gray input is always coded as gray (12.1); gray output needs no chroma. */
    if (channels == 1) {
        p.pixel_format = NPP_BPG_FORMAT_GRAY;
        p.color_space = NPP_BPG_CS_YCBCR;
    }
    bpg_plane planes[3];
    rc = bpg_prepare_planes(pixels, width, height, channels, stride, p.pixel_format, p.bit_depth,
                            p.color_space, p.limited_range, planes, errmsg);
    if (rc)
        return rc;
    stream_out so;
    memset(&so, 0, sizeof so);
    so.width = width;
    so.height = height;
    so.chroma_format_idc = bpg_chroma_format_idc(p.pixel_format);
    if (!enc->enc || enc->W8 != planes[0].w || enc->H8 != planes[0].h ||
        enc->pixel_format != p.pixel_format)
        rc = open_x265(enc, planes[0].w, planes[0].h, p.pixel_format, width, height, errmsg);
    if (!rc)
        rc = encode_planes(enc, planes, qp, &so, errmsg);
    for (int k = 0; k < 3; k++)
        free(planes[k].p);
    /* An open x265 holds about 28 bytes per pixel between pictures (two frames' buffers
     * from its second picture on: 330 MB at 12 MP). Above this size opening costs little
     * beside the encode, so the instance is closed now: a round trip's decode then runs
     * after x265's memory is gone, not on top of it. The file is the same either way. */
    if ((uint64_t)planes[0].w * (uint64_t)planes[0].h > BPG_KEEP_X265_PIXELS)
        close_x265(enc);
    if (rc) {
        buf_free(&so.nals);
        return rc;
    }

    bpg_buf f = {0};
    buf_byte(&f, 0x42);
    buf_byte(&f, 0x50);
    buf_byte(&f, 0x47);
    buf_byte(&f, 0xfb);
    /* A gray picture must be labelled color space 0 (FORMAT 3). */
    int cs = p.pixel_format == NPP_BPG_FORMAT_GRAY ? 0 : p.color_space;
    buf_byte(&f, (uint8_t)(p.pixel_format << 5 | (p.bit_depth - 8)));
    buf_byte(&f, (uint8_t)(cs << 4 | (p.limited_range ? 2 : 0)));
    buf_ue7(&f, (uint32_t)width);
    buf_ue7(&f, (uint32_t)height);
    buf_ue7(&f, 0); /* picture_data_length: to the end of the file, as bpgenc */
    bpg_write_hevc_header(&f, &so.hdr);
    buf_put(&f, so.nals.data, so.nals.len);
    buf_free(&so.nals);
    if (f.oom) {
        buf_free(&f);
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
    }
    *out = f.data;
    *out_len = f.len;
    return NPP_BPG_OK;
}

NPP_API(int) npp_bpg_encode(const uint8_t *pixels, int width, int height, int channels,
                            ptrdiff_t stride, const npp_bpg_encode_params *params,
                            uint8_t **out, size_t *out_len, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!params)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    npp_bpg_encoder *enc = NULL;
    int rc = npp_bpg_encoder_new(params, &enc, errmsg);
    if (rc)
        return rc;
    rc = npp_bpg_encoder_encode(enc, pixels, width, height, channels, stride, params->qp, out,
                                out_len, errmsg);
    npp_bpg_encoder_free(enc);
    return rc;
}
