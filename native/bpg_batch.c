/* SPDX-License-Identifier: GPL-2.0-or-later
 * Round trips of a whole batch in C threads: the training loop's route.
 *
 * A training step hands over a float tensor and wants the codec's reconstruction and
 * bits back. Doing the per-image work (float -> uint8 RGB, encode, decode, uint8 ->
 * float) here, one pthread per encoder handle, keeps Python out of the loop: one ctypes
 * call per batch, the GIL released for all of it. The pixel conversions are the ones
 * npp_plugin.images does with torch (clamp to [0, 1], * 255 in float32, round half to
 * even; back: / 255 in float32), so both routes give identical tensors. */
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bpg_internal.h"

#define BPG_MAX_THREADS 256

typedef struct {
    const float *in;
    int64_t s[4];      /* element strides of in: image, channel, row, column */
    float *out;        /* float32 output, or NULL and: */
    uint8_t *out_u8;   /* the decoded 8-bit samples, planar */
    uint64_t *bytes;
    int n, height, width, qp;
    atomic_int next;   /* the next image to take */
    atomic_int failed; /* set on the first error: the others stop taking images */
    pthread_mutex_t lock;
    int status;        /* first error, under lock */
    char *errmsg;
} batch_job;

typedef struct {
    batch_job *job;
    npp_bpg_encoder *enc;
} worker_arg;

/* The tolerance of npp_plugin.images.check_image_batch: values within 1e-6 of [0, 1]. */
#define IN_LO (-1e-6)
#define IN_HI (1.0 + 1e-6)

/* One sample in [IN_LO, IN_HI] (to_rgb refuses the batch otherwise) to 0..255: * 255 in
 * float32, rounded half to even, as clamp(0, 1) * 255 then torch.round give. Adding
 * 1.5 * 2^23 rounds to an integer in the default rounding mode (ties to even) and
 * leaves it in the low mantissa bits; v * 255 lies within (-0.5, 255.5), so no clamp is
 * needed, and there is no branch or float-to-int conversion: the loops vectorise. */
static inline uint8_t sample_to_u8(float v)
{
    float t = v * 255.0f + 12582912.0f; /* no -ffast-math: not folded away */
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (uint8_t)bits;
}

/* Inside check_image_batch's tolerance; false for NaN. */
static inline int in_range(float v) { return (v >= (float)IN_LO) & (v <= (float)IN_HI); }

/* Image `img` (strides s[1..3]) to interleaved 8-bit RGB; 0 if any value is out of range.
 * Channels-last rows (the permuted view of HWC images) are already interleaved and
 * contiguous planar rows are read three at a time: both loops vectorise. */
BPG_HOT
static int to_rgb(const float *img, const int64_t s[4], int h, int w, uint8_t *rgb)
{
    int ok = 1;
    for (int y = 0; y < h; y++) {
        uint8_t *o = rgb + (size_t)3 * w * y;
        const float *row = img + y * s[2];
        if (s[1] == 1 && s[3] == 3) {
            for (int i = 0; i < 3 * w; i++) {
                ok &= in_range(row[i]);
                o[i] = sample_to_u8(row[i]);
            }
        } else if (s[3] == 1) {
            const float *r = row, *g = row + s[1], *b = row + 2 * s[1];
            for (int x = 0; x < w; x++) {
                ok &= in_range(r[x]) & in_range(g[x]) & in_range(b[x]);
                o[3 * x] = sample_to_u8(r[x]);
                o[3 * x + 1] = sample_to_u8(g[x]);
                o[3 * x + 2] = sample_to_u8(b[x]);
            }
        } else {
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    float v = row[c * s[1] + x * s[3]];
                    ok &= in_range(v);
                    o[3 * x + c] = sample_to_u8(v);
                }
        }
    }
    return ok;
}

/* The error for an image to_rgb refused, worded as check_image_batch words it. */
static int range_error(const float *img, const int64_t s[4], int h, int w, int k, char **errmsg)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double v = img[c * s[1] + y * s[2] + x * s[3]];
                if (!isfinite(v))
                    return bpg_fail_arg(errmsg, "image",
                                    "bpg: image %d of the batch contains NaN or infinite values",
                                    k);
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
    return bpg_fail_arg(errmsg, "image",
                    "bpg: image %d of the batch: values span [%.4g, %.4g]; expected [0, 1]", k,
                    lo, hi);
}

/* Interleaved 8-bit RGB to float32 planes: v / 255 in float32, as torch divides (the
 * division is exact IEEE, vectorised, no reciprocal). */
BPG_HOT
static void to_float(const uint8_t *rgb, size_t hw, float *chw)
{
    float *r = chw, *g = chw + hw, *b = chw + 2 * hw;
    for (size_t i = 0; i < hw; i++) {
        r[i] = (float)rgb[3 * i] / 255.0f;
        g[i] = (float)rgb[3 * i + 1] / 255.0f;
        b[i] = (float)rgb[3 * i + 2] / 255.0f;
    }
}

/* Interleaved 8-bit RGB to 8-bit planes (the decoded samples themselves). */
BPG_HOT
static void to_planes(const uint8_t *rgb, size_t hw, uint8_t *chw)
{
    uint8_t *r = chw, *g = chw + hw, *b = chw + 2 * hw;
    for (size_t i = 0; i < hw; i++) {
        r[i] = rgb[3 * i];
        g[i] = rgb[3 * i + 1];
        b[i] = rgb[3 * i + 2];
    }
}

static int one_image(batch_job *job, npp_bpg_encoder *enc, int k, uint8_t *rgb, char **errmsg)
{
    const size_t hw = (size_t)job->height * job->width;
    const float *img = job->in + k * job->s[0];
    if (!to_rgb(img, job->s, job->height, job->width, rgb))
        return range_error(img, job->s, job->height, job->width, k, errmsg);
    uint8_t *bs = NULL;
    size_t len = 0;
    int rc = npp_bpg_encoder_encode(enc, rgb, job->width, job->height, 3, (ptrdiff_t)job->width * 3,
                                    job->qp, &bs, &len, errmsg);
    if (rc)
        return rc;
    npp_bpg_info info;
    /* no verification pass, no cut-short guards: our encoder produced it just now */
    rc = bpg_decode_into(bs, len, 8, BPG_DECODE_OWN_STREAM, UINT64_MAX, rgb, 3 * hw, &info,
                         errmsg);
    free(bs);
    if (rc)
        return rc;
    if (job->out)
        to_float(rgb, hw, job->out + 3 * hw * k);
    else
        to_planes(rgb, hw, job->out_u8 + 3 * hw * k);
    job->bytes[k] = len;
    return NPP_BPG_OK;
}

static void *worker(void *p)
{
    worker_arg *a = p;
    batch_job *job = a->job;
    uint8_t *rgb = malloc((size_t)job->height * job->width * 3);
    char *err = NULL;
    int rc = rgb ? NPP_BPG_OK : bpg_fail(&err, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
    while (!rc && !atomic_load(&job->failed)) {
        int k = atomic_fetch_add(&job->next, 1);
        if (k >= job->n)
            break;
        rc = one_image(job, a->enc, k, rgb, &err);
    }
    free(rgb);
    if (rc) {
        atomic_store(&job->failed, 1);
        pthread_mutex_lock(&job->lock);
        if (!job->status) {
            job->status = rc;
            job->errmsg = err;
            err = NULL;
        }
        pthread_mutex_unlock(&job->lock);
        free(err);
    }
    return NULL;
}

static int roundtrip_batch(npp_bpg_encoder *const *encoders, int n_encoders, const float *in,
                           const int64_t in_strides[4], int n, int height, int width, int qp,
                           float *out, uint8_t *out_u8, uint64_t *bytes, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!encoders || !in || !(out || out_u8) || !bytes)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: NULL pointer argument");
    if (n < 0 || n_encoders < 1 || height < 1 || width < 1)
        return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT,
                        "bpg: roundtrip_batch needs n >= 0, n_encoders >= 1 and a positive size "
                        "(got n=%d, n_encoders=%d, %dx%d)", n, n_encoders, width, height);
    for (int t = 0; t < n_encoders; t++)
        if (!encoders[t])
            return bpg_fail(errmsg, NPP_BPG_ERR_ARGUMENT, "bpg: encoder %d is NULL", t);
    if (n == 0)
        return NPP_BPG_OK;
#ifdef __GLIBC__
    /* Before a large picture's x265 and decoder buffers: return the heap the caller freed
     * (glibc keeps it; a refinement's band-by-band temporaries leave about 100 MB at 12 MP). */
    if ((uint64_t)height * (uint64_t)width > BPG_KEEP_X265_PIXELS)
        malloc_trim(0);
#endif
    batch_job job = {.in = in, .out = out, .out_u8 = out_u8, .bytes = bytes, .n = n,
                     .height = height, .width = width, .qp = qp};
    const int64_t hw = (int64_t)height * width;
    const int64_t contiguous[4] = {3 * hw, hw, width, 1};
    memcpy(job.s, in_strides ? in_strides : contiguous, sizeof job.s);
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    pthread_mutex_init(&job.lock, NULL);
    int nt = n_encoders < n ? n_encoders : n;
    if (nt > BPG_MAX_THREADS) /* the arrays below live on the stack */
        nt = BPG_MAX_THREADS;
    worker_arg args[nt];
    pthread_t tid[nt];
    int started[nt];
    for (int t = 0; t < nt; t++) {
        args[t] = (worker_arg){&job, encoders[t]};
        /* thread 0 is the caller; if a thread cannot start, the others take its share */
        started[t] = t > 0 && pthread_create(&tid[t], NULL, worker, &args[t]) == 0;
    }
    worker(&args[0]);
    for (int t = 1; t < nt; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&job.lock);
    if (job.status) {
        if (errmsg)
            *errmsg = job.errmsg;
        else
            free(job.errmsg);
        return job.status;
    }
    return NPP_BPG_OK;
}

NPP_API(int) npp_bpg_roundtrip_batch(npp_bpg_encoder *const *encoders, int n_encoders,
                                     const float *in, const int64_t in_strides[4], int n,
                                     int height, int width, int qp, float *out, uint64_t *bytes,
                                     char **errmsg)
{
    return roundtrip_batch(encoders, n_encoders, in, in_strides, n, height, width, qp, out, NULL,
                           bytes, errmsg);
}

NPP_API(int) npp_bpg_roundtrip_batch_u8(npp_bpg_encoder *const *encoders, int n_encoders,
                                        const float *in, const int64_t in_strides[4], int n,
                                        int height, int width, int qp, uint8_t *out,
                                        uint64_t *bytes, char **errmsg)
{
    return roundtrip_batch(encoders, n_encoders, in, in_strides, n, height, width, qp, NULL, out,
                           bytes, errmsg);
}
