/* SPDX-License-Identifier: GPL-2.0-or-later
 * Round trips of a whole batch in C threads: the training loop's route.
 *
 * A training step hands over a float tensor and wants the codec's reconstruction and
 * bits back. Doing the per-image work (float -> uint8 RGB, encode, decode, uint8 ->
 * float) here, one pthread per encoder handle, keeps Python out of the loop: one ctypes
 * call per batch, the GIL released for all of it. The pixel conversions are the ones
 * npp_plugin.images does with torch (clamp to [0, 1], * 255 in float32, round half to
 * even; back: / 255 in float32), so both routes give identical tensors. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bpg_internal.h"

#define BPG_MAX_THREADS 256

typedef struct {
    const float *in;
    float *out;
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

BPG_HOT
static void to_rgb(const float *chw, size_t hw, uint8_t *rgb)
{
    /* Adding and subtracting 1.5 * 2^23 rounds a float in [0, 2^22) to the nearest
     * integer, ties to even (the default rounding mode), as torch.round and rintf do,
     * without a libm call per sample. */
    const float magic = 12582912.0f;
    const float *r = chw, *g = chw + hw, *b = chw + 2 * hw;
    for (size_t i = 0; i < hw; i++) {
        float v[3] = {r[i], g[i], b[i]};
        for (int c = 0; c < 3; c++) {
            float x = v[c] > 1.0f ? 1.0f : v[c];
            x = x >= 0.0f ? x : 0.0f;          /* also NaN -> 0 */
            float t = x * 255.0f + magic;      /* no -ffast-math: not folded away */
            rgb[3 * i + c] = (uint8_t)(t - magic);
        }
    }
}

BPG_HOT
static void to_float(const uint8_t *rgb, size_t hw, float *chw)
{
    float lut[256]; /* v / 255 in float32, as torch divides */
    for (int v = 0; v < 256; v++)
        lut[v] = (float)v / 255.0f;
    for (int c = 0; c < 3; c++) {
        float *p = chw + c * hw;
        for (size_t i = 0; i < hw; i++)
            p[i] = lut[rgb[3 * i + c]];
    }
}

static int one_image(batch_job *job, npp_bpg_encoder *enc, int k, uint8_t *rgb, char **errmsg)
{
    const size_t hw = (size_t)job->height * job->width;
    to_rgb(job->in + 3 * hw * k, hw, rgb);
    uint8_t *bs = NULL;
    size_t len = 0;
    int rc = npp_bpg_encoder_encode(enc, rgb, job->width, job->height, 3, (ptrdiff_t)job->width * 3,
                                    job->qp, &bs, &len, errmsg);
    if (rc)
        return rc;
    npp_bpg_info info;
    /* no verification pass: the bitstream was produced just now by our encoder */
    rc = npp_bpg_decode_into(bs, len, 8, 0, rgb, 3 * hw, &info, errmsg);
    free(bs);
    if (rc)
        return rc;
    to_float(rgb, hw, job->out + 3 * hw * k);
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

NPP_API(int) npp_bpg_roundtrip_batch(npp_bpg_encoder *const *encoders, int n_encoders,
                                     const float *in, int n, int height, int width, int qp,
                                     float *out, uint64_t *bytes, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!encoders || !in || !out || !bytes)
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
    batch_job job = {.in = in, .out = out, .bytes = bytes, .n = n,
                     .height = height, .width = width, .qp = qp};
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
