/* SPDX-License-Identifier: GPL-2.0-or-later
 * Makes x265's output independent of what an encoder instance encoded before.
 *
 * x265 toggles slice_loop_filter_across_slices_enabled_flag from picture to picture
 * (a bit of a constant indexed by its picture counter). For a picture made of one
 * slice the flag has no effect on decoding (the slice has no boundary inside the
 * picture), but it makes the bytes depend on the instance's history. We set it to 1,
 * the value HEVC infers when the flag is absent, in every IDR slice header. */
#include <stdlib.h>
#include <string.h>

#include "bpg_internal.h"

static int32_t br_se(bpg_bitreader *br)
{
    uint32_t k = br_ue(br);
    return (k & 1) ? (int32_t)((k + 1) / 2) : -(int32_t)(k / 2);
}

int bpg_parse_pps(const uint8_t *nal, size_t n, bpg_pps *pps)
{
    memset(pps, 0, sizeof *pps);
    if (n < 3)
        return -1;
    uint8_t *r = malloc(n);
    if (!r)
        return -1;
    bpg_bitreader br_, *br = &br_;
    br_init(br, r, rbsp_unescape(nal + 2, n - 2, r));
    br_ue(br); /* pps_pic_parameter_set_id */
    br_ue(br); /* pps_seq_parameter_set_id */
    pps->dependent_slices = (int)br_u(br, 1);
    pps->output_flag_present = (int)br_u(br, 1);
    pps->extra_slice_header_bits = (int)br_u(br, 3);
    br_u(br, 1); /* sign_data_hiding */
    br_u(br, 1); /* cabac_init_present */
    br_ue(br);
    br_ue(br);
    br_se(br); /* init_qp_minus26 */
    br_u(br, 1);
    int tskip = (int)br_u(br, 1);
    if (br_u(br, 1)) /* cu_qp_delta_enabled */
        br_ue(br);
    br_se(br);
    br_se(br);
    pps->slice_chroma_qp_offsets = (int)br_u(br, 1);
    br_u(br, 3); /* weighted pred, weighted bipred, transquant bypass */
    int tiles = (int)br_u(br, 1);
    br_u(br, 1); /* entropy_coding_sync */
    int rc = -1;
    if (tiles)
        goto done; /* x265 never writes tiles; not worth parsing */
    pps->lf_across_slices = (int)br_u(br, 1);
    if (br_u(br, 1)) { /* deblocking_filter_control_present */
        pps->deblocking_override_enabled = (int)br_u(br, 1);
        pps->deblocking_disabled = (int)br_u(br, 1);
        if (!pps->deblocking_disabled) {
            br_se(br);
            br_se(br);
        }
    }
    if (br_u(br, 1)) /* pps_scaling_list_data_present: not from x265 */
        goto done;
    br_u(br, 1);      /* lists_modification_present */
    br_ue(br);        /* log2_parallel_merge_level_minus2 */
    if (br_u(br, 1))  /* slice_segment_header_extension_present: not from x265 */
        goto done;
    if (br_u(br, 1)) { /* pps_extension_present */
        int range = (int)br_u(br, 1);
        br_u(br, 7);
        if (range) {
            if (tskip)
                br_ue(br);
            br_u(br, 1); /* cross_component_prediction */
            pps->chroma_qp_offset_list = (int)br_u(br, 1);
        }
    }
    pps->valid = !br->overrun;
    rc = pps->valid ? 0 : -1;
done:
    free(r);
    return rc;
}

int bpg_canonical_slice(const uint8_t *nal, size_t n, const bpg_pps *pps, int sao,
                        int chroma_format_idc, bpg_buf *out)
{
    int type = (nal[0] >> 1) & 0x3f;
    if (!pps->valid || n < 3 || (type != 19 && type != 20)) /* IDR slices only */
        return 0;
    uint8_t *r = malloc(n);
    if (!r)
        return -1;
    size_t rn = rbsp_unescape(nal + 2, n - 2, r);
    bpg_bitreader br_, *br = &br_;
    br_init(br, r, rn);
    int done = 0;
    if (!br_u(br, 1)) /* first_slice_segment_in_pic_flag */
        goto out;
    br_u(br, 1);      /* no_output_of_prior_pics_flag (IRAP) */
    br_ue(br);        /* slice_pic_parameter_set_id */
    br_u(br, pps->extra_slice_header_bits);
    if (br_ue(br) != 2) /* slice_type must be I */
        goto out;
    if (pps->output_flag_present)
        br_u(br, 1);
    int sao_luma = 0, sao_chroma = 0;
    if (sao) {
        sao_luma = (int)br_u(br, 1);
        if (chroma_format_idc != 0)
            sao_chroma = (int)br_u(br, 1);
    }
    br_se(br); /* slice_qp_delta */
    if (pps->slice_chroma_qp_offsets) {
        br_se(br);
        br_se(br);
    }
    if (pps->chroma_qp_offset_list)
        br_u(br, 1);
    int disabled = pps->deblocking_disabled;
    if (pps->deblocking_override_enabled && br_u(br, 1)) {
        disabled = (int)br_u(br, 1);
        if (!disabled) {
            br_se(br);
            br_se(br);
        }
    }
    if (!pps->lf_across_slices || !(sao_luma || sao_chroma || !disabled) || br->overrun ||
        br->pos >= br->nbits)
        goto out;
    r[br->pos >> 3] |= (uint8_t)(0x80 >> (br->pos & 7)); /* the flag := 1 */
    buf_byte(out, nal[0]);
    buf_byte(out, nal[1]);
    nal_put_escaped(out, r, rn);
    done = 1;
out:
    free(r);
    return done;
}
