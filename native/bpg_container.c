/* SPDX-License-Identifier: GPL-2.0-or-later
 * The BPG container: file header, extension records, the compact HEVC header,
 * and its translation from x265's SPS / back to a standard VPS + SPS
 * (FORMAT.md sections 1-6 and 9). */
#include <stdlib.h>
#include <string.h>

#include "bpg_internal.h"

/* ---- file header (section 3) ----------------------------------------------------------- */

static int parse_extensions(const uint8_t *ext, size_t n, npp_bpg_info *info, char **errmsg)
{
    size_t pos = 0;
    while (pos < n) {
        uint32_t tag, len;
        if (read_ue7(ext, n, &pos, &tag) || read_ue7(ext, n, &pos, &len) || len > n - pos)
            return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                            "bpg: extension block is truncated or malformed at byte %zu", pos);
        if (tag < 32)
            info->extension_tags |= 1u << tag;
        if (tag == 5) { /* animation control */
            size_t p = pos;
            uint32_t loop, num, den;
            if (read_ue7(ext, pos + len, &p, &loop) || read_ue7(ext, pos + len, &p, &num) ||
                read_ue7(ext, pos + len, &p, &den) || num == 0 || den == 0 || num > 0xffff ||
                den > 0xffff)
                return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                                "bpg: invalid animation extension record");
            info->loop_count = (int)(loop > 0x7fffffff ? 0x7fffffff : loop);
            info->frame_period_num = (int)num;
            info->frame_period_den = (int)den;
        }
        pos += len; /* unknown tags are skipped */
    }
    return NPP_BPG_OK;
}

int bpg_parse_header(const uint8_t *data, size_t len, npp_bpg_info *info, size_t *payload_end,
                     char **errmsg)
{
    memset(info, 0, sizeof *info);
    if (!data || len < 6)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: %zu bytes is too short for a BPG header",
                        data ? len : 0);
    uint32_t magic = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                     (uint32_t)data[2] << 8 | data[3];
    if (magic != BPG_MAGIC)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: bad magic %02x%02x%02x%02x (expected 425047fb)", data[0], data[1],
                        data[2], data[3]);
    info->pixel_format = data[4] >> 5;
    info->has_alpha = (data[4] >> 4) & 1;
    info->bit_depth = (data[4] & 15) + 8;
    info->color_space = data[5] >> 4;
    info->has_extension = (data[5] >> 3) & 1;
    info->alpha2 = (data[5] >> 2) & 1;
    info->limited_range = (data[5] >> 1) & 1;
    info->animation = data[5] & 1;
    if (info->pixel_format > 5)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: reserved pixel_format %d",
                        info->pixel_format);
    if (info->bit_depth > 14)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: bit depth %d is above 14",
                        info->bit_depth);
    if (info->color_space > 4)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: reserved color_space %d",
                        info->color_space);
    if (info->pixel_format == NPP_BPG_FORMAT_GRAY && info->alpha2 && !info->has_alpha)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: grayscale with a W plane is invalid");

    size_t pos = 6;
    uint32_t w, h, pic_len, ext_len = 0;
    if (read_ue7(data, len, &pos, &w) || read_ue7(data, len, &pos, &h) ||
        read_ue7(data, len, &pos, &pic_len))
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: truncated or invalid size fields");
    if (w == 0 || h == 0 || w > BPG_MAX_DIM || h > BPG_MAX_DIM)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: picture size %ux%u is invalid (1..%d per side)", w, h, BPG_MAX_DIM);
    info->width = (int)w;
    info->height = (int)h;
    if (info->has_extension) {
        if (read_ue7(data, len, &pos, &ext_len) || ext_len > len - pos)
            return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: truncated extension block");
        int rc = parse_extensions(data + pos, ext_len, info, errmsg);
        if (rc)
            return rc;
        pos += ext_len;
    }
    if (info->animation && !(info->extension_tags & (1u << 5)))
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: animation flag set without an animation extension");
    info->header_size = pos;
    if (pic_len != 0 && pic_len > len - pos)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: picture data length %u exceeds the %zu bytes left", pic_len,
                        len - pos);
    if (payload_end)
        *payload_end = pic_len ? pos + pic_len : len;
    return NPP_BPG_OK;
}

/* ---- compact HEVC header (section 4) ---------------------------------------------------- */

static int check_hevc_header(const bpg_hevc_header *h, char **errmsg)
{
    uint32_t min_cb = h->log2_min_cb_minus3 + 3, ctb = min_cb + h->log2_diff_max_min_cb;
    uint32_t min_tb = h->log2_min_tb_minus2 + 2, max_tb = min_tb + h->log2_diff_max_min_tb;
    if (h->log2_min_cb_minus3 > 3 || h->log2_diff_max_min_cb > 3 || ctb < 4 || ctb > 6 ||
        h->log2_min_tb_minus2 > 3 || h->log2_diff_max_min_tb > 3 || min_tb >= min_cb ||
        max_tb > 5 || max_tb > ctb || h->max_th_depth_intra > ctb - min_tb)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: compact HEVC header has invalid block sizes (CB 2^%u..2^%u, "
                        "TB 2^%u..2^%u, TU depth %u)",
                        min_cb, ctb, min_tb, max_tb, h->max_th_depth_intra);
    if (h->pcm && (h->log2_min_pcm_minus3 + 3 > 5 ||
                   h->log2_min_pcm_minus3 + 3 + h->log2_diff_max_min_pcm > 5))
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: invalid PCM block sizes");
    if (h->range_ext && (h->rext[3] || h->rext[4] || h->rext[6] || h->rext[8]))
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: range extension flag that BPG forbids is set");
    return NPP_BPG_OK;
}

int bpg_parse_hevc_header(const uint8_t *data, size_t len, size_t *pos, bpg_hevc_header *h,
                          char **errmsg)
{
    uint32_t n;
    memset(h, 0, sizeof *h);
    if (read_ue7(data, len, pos, &n) || n == 0 || n > len - *pos)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                        "bpg: truncated or invalid compact HEVC header length");
    bpg_bitreader br;
    br_init(&br, data + *pos, n);
    h->log2_min_cb_minus3 = br_ue(&br);
    h->log2_diff_max_min_cb = br_ue(&br);
    h->log2_min_tb_minus2 = br_ue(&br);
    h->log2_diff_max_min_tb = br_ue(&br);
    h->max_th_depth_intra = br_ue(&br);
    h->sao = (int)br_u(&br, 1);
    h->pcm = (int)br_u(&br, 1);
    if (h->pcm) {
        h->pcm_bd_luma_minus1 = (int)br_u(&br, 4);
        h->pcm_bd_chroma_minus1 = (int)br_u(&br, 4);
        h->log2_min_pcm_minus3 = br_ue(&br);
        h->log2_diff_max_min_pcm = br_ue(&br);
        h->pcm_loop_filter_disabled = (int)br_u(&br, 1);
    }
    h->strong_intra_smoothing = (int)br_u(&br, 1);
    h->ext_present = (int)br_u(&br, 1);
    if (h->ext_present) {
        h->range_ext = (int)br_u(&br, 1);
        if (br_u(&br, 7) != 0)
            return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT,
                            "bpg: unsupported SPS extension bits in the compact header");
        if (h->range_ext)
            for (int i = 0; i < 9; i++)
                h->rext[i] = (int)br_u(&br, 1);
    }
    if (br.overrun)
        return bpg_fail(errmsg, NPP_BPG_ERR_CORRUPT, "bpg: compact HEVC header is truncated");
    *pos += n;
    return check_hevc_header(h, errmsg);
}

void bpg_write_hevc_header(bpg_buf *b, const bpg_hevc_header *h)
{
    bpg_buf bits = {0};
    bpg_bitwriter bw = {&bits, 0, 0};
    bw_ue(&bw, h->log2_min_cb_minus3);
    bw_ue(&bw, h->log2_diff_max_min_cb);
    bw_ue(&bw, h->log2_min_tb_minus2);
    bw_ue(&bw, h->log2_diff_max_min_tb);
    bw_ue(&bw, h->max_th_depth_intra);
    bw_u(&bw, (uint32_t)h->sao, 1);
    bw_u(&bw, (uint32_t)h->pcm, 1);
    if (h->pcm) {
        bw_u(&bw, (uint32_t)h->pcm_bd_luma_minus1, 4);
        bw_u(&bw, (uint32_t)h->pcm_bd_chroma_minus1, 4);
        bw_ue(&bw, h->log2_min_pcm_minus3);
        bw_ue(&bw, h->log2_diff_max_min_pcm);
        bw_u(&bw, (uint32_t)h->pcm_loop_filter_disabled, 1);
    }
    bw_u(&bw, (uint32_t)h->strong_intra_smoothing, 1);
    bw_u(&bw, (uint32_t)h->ext_present, 1);
    if (h->ext_present) {
        bw_u(&bw, (uint32_t)h->range_ext, 1);
        bw_u(&bw, 0, 7);
        if (h->range_ext)
            for (int i = 0; i < 9; i++)
                bw_u(&bw, (uint32_t)h->rext[i], 1);
    }
    bw_align_zero(&bw);
    if (bits.oom)
        b->oom = 1;
    buf_ue7(b, (uint32_t)bits.len);
    buf_put(b, bits.data, bits.len);
    buf_free(&bits);
}

/* ---- x265 SPS -> compact header (section 9: bpgenc's build_modified_sps checks) ----------- */

static int skip_vui(bpg_bitreader *br, char **errmsg)
{
    if (br_u(br, 1) && br_u(br, 8) == 255) /* aspect_ratio_info / idc: EXTENDED_SAR */
        br_u(br, 32);
    if (br_u(br, 1)) /* overscan_info_present */
        br_u(br, 1);
    if (br_u(br, 1)) { /* video_signal_type_present: carried nowhere in BPG, ignored */
        br_u(br, 4);
        if (br_u(br, 1))
            br_u(br, 24);
    }
    if (br_u(br, 1)) { /* chroma_loc_info_present */
        br_ue(br);
        br_ue(br);
    }
    br_u(br, 3); /* neutral_chroma, field_seq, frame_field_info_present */
    if (br_u(br, 1)) { /* default_display_window */
        for (int i = 0; i < 4; i++)
            br_ue(br);
    }
    if (br_u(br, 1)) { /* vui_timing_info_present */
        br_u(br, 32);
        br_u(br, 32);
        if (br_u(br, 1))
            br_ue(br);
        if (br_u(br, 1))
            return bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,
                            "bpg: x265 wrote HRD parameters, which BPG cannot carry");
    }
    if (br_u(br, 1)) { /* bitstream_restriction */
        br_u(br, 3);
        for (int i = 0; i < 5; i++)
            br_ue(br);
    }
    return NPP_BPG_OK;
}

#define SPS_REQUIRE(cond, what)                                                                 \
    do {                                                                                        \
        if (!(cond))                                                                            \
            return bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,                                        \
                            "bpg: x265 SPS cannot be stored in BPG: %s", what);                 \
    } while (0)

int bpg_hevc_header_from_sps(const uint8_t *nal, size_t n, int width, int height, int bit_depth,
                             bpg_hevc_header *h, char **errmsg)
{
    memset(h, 0, sizeof *h);
    SPS_REQUIRE(n > 2 && ((nal[0] >> 1) & 0x3f) == 33, "not an SPS NAL unit");
    uint8_t *rbsp = malloc(n);
    if (!rbsp)
        return bpg_fail(errmsg, NPP_BPG_ERR_NOMEM, "bpg: out of memory");
    size_t rn = rbsp_unescape(nal + 2, n - 2, rbsp);
    bpg_bitreader br_, *br = &br_;
    br_init(br, rbsp, rn);
    int rc = NPP_BPG_OK;
#undef SPS_REQUIRE
#define SPS_REQUIRE(cond, what)                                                                 \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            rc = bpg_fail(errmsg, NPP_BPG_ERR_ENCODER,                                          \
                          "bpg: x265 SPS cannot be stored in BPG: %s", what);                   \
            goto done;                                                                          \
        }                                                                                       \
    } while (0)

    SPS_REQUIRE(br_u(br, 4) == 0, "VPS id is not 0");
    uint32_t max_sub_layers_minus1 = br_u(br, 3);
    SPS_REQUIRE(max_sub_layers_minus1 == 0, "more than one sub-layer");
    br_u(br, 1);              /* temporal_id_nesting */
    br_u(br, 32);             /* profile space, tier, profile idc, compat flags (part) */
    br_u(br, 32);
    br_u(br, 32);             /* ... constraint flags, level_idc: 96 bits in all */
    SPS_REQUIRE(br_ue(br) == 0, "SPS id is not 0");
    uint32_t chroma = br_ue(br);
    if (chroma == 3)
        SPS_REQUIRE(br_u(br, 1) == 0, "separate colour planes");
    uint32_t pw = br_ue(br), ph = br_ue(br);
    if (br_u(br, 1)) /* conformance window: dropped, the BPG header has the true size */
        for (int i = 0; i < 4; i++)
            br_ue(br);
    SPS_REQUIRE(br_ue(br) == (uint32_t)(bit_depth - 8), "unexpected luma bit depth");
    SPS_REQUIRE(br_ue(br) == (uint32_t)(bit_depth - 8), "unexpected chroma bit depth");
    SPS_REQUIRE(br_ue(br) == 4, "log2_max_pic_order_cnt_lsb is not 8");
    br_u(br, 1);      /* sub_layer_ordering_info_present (one layer either way) */
    br_ue(br);
    br_ue(br);
    br_ue(br);
    h->log2_min_cb_minus3 = br_ue(br);
    h->log2_diff_max_min_cb = br_ue(br);
    h->log2_min_tb_minus2 = br_ue(br);
    h->log2_diff_max_min_tb = br_ue(br);
    uint32_t inter_depth = br_ue(br);
    h->max_th_depth_intra = br_ue(br);
    SPS_REQUIRE(inter_depth == h->max_th_depth_intra, "inter and intra TU depths differ");
    /* Decoders take the coded size as the BPG size rounded up to the minimum CB. */
    uint32_t cb = 1u << (h->log2_min_cb_minus3 + 3);
    SPS_REQUIRE(h->log2_min_cb_minus3 <= 3, "minimum coding block above 64");
    SPS_REQUIRE(pw == ((uint32_t)width + cb - 1) / cb * cb &&
                    ph == ((uint32_t)height + cb - 1) / cb * cb,
                "coded size is not the picture size rounded up to the minimum CB");
    SPS_REQUIRE(br_u(br, 1) == 0, "scaling lists");
    SPS_REQUIRE(br_u(br, 1) == 1, "AMP disabled");
    h->sao = (int)br_u(br, 1);
    h->pcm = (int)br_u(br, 1);
    if (h->pcm) {
        h->pcm_bd_luma_minus1 = (int)br_u(br, 4);
        h->pcm_bd_chroma_minus1 = (int)br_u(br, 4);
        h->log2_min_pcm_minus3 = br_ue(br);
        h->log2_diff_max_min_pcm = br_ue(br);
        h->pcm_loop_filter_disabled = (int)br_u(br, 1);
    }
    SPS_REQUIRE(br_ue(br) == 0, "short-term reference picture sets in the SPS");
    SPS_REQUIRE(br_u(br, 1) == 0, "long-term reference pictures");
    SPS_REQUIRE(br_u(br, 1) == 1, "temporal MVP disabled");
    h->strong_intra_smoothing = (int)br_u(br, 1);
    if (br_u(br, 1)) { /* vui_parameters_present */
        rc = skip_vui(br, errmsg);
        if (rc)
            goto done;
    }
    h->ext_present = (int)br_u(br, 1);
    if (h->ext_present) {
        h->range_ext = (int)br_u(br, 1);
        SPS_REQUIRE(br_u(br, 7) == 0, "multilayer/3D/SCC SPS extensions");
        if (h->range_ext)
            for (int i = 0; i < 9; i++)
                h->rext[i] = (int)br_u(br, 1);
        SPS_REQUIRE(!(h->rext[3] || h->rext[4] || h->rext[6] || h->rext[8]),
                    "explicit RDPCM, extended precision, high precision offsets or CABAC "
                    "bypass alignment");
    }
    SPS_REQUIRE(!br->overrun, "SPS is truncated");
done:
    free(rbsp);
    return rc;
}
#undef SPS_REQUIRE

/* ---- VPS + SPS for libde265 (section 6) --------------------------------------------------- */

int bpg_chroma_format_idc(int pixel_format)
{
    static const int idc[6] = {0, 1, 2, 3, 1, 2};
    return idc[pixel_format];
}

static void write_ptl(bpg_bitwriter *bw, int chroma_format_idc, int bit_depth)
{
    int profile = 4; /* format range extensions */
    if (chroma_format_idc == 1 && bit_depth == 8)
        profile = 1; /* Main */
    else if (chroma_format_idc == 1 && bit_depth == 10)
        profile = 2; /* Main 10 */
    bw_u(bw, 0, 2);                    /* general_profile_space */
    bw_u(bw, 0, 1);                    /* general_tier_flag */
    bw_u(bw, (uint32_t)profile, 5);
    bw_u(bw, 1u << (31 - profile), 32); /* compatibility flag j = profile */
    bw_u(bw, 1, 1);                    /* progressive_source */
    bw_u(bw, 0, 1);                    /* interlaced_source */
    bw_u(bw, 0, 1);                    /* non_packed_constraint */
    bw_u(bw, 1, 1);                    /* frame_only_constraint */
    bw_u(bw, 0, 32);                   /* 43 reserved/constraint bits + 1 */
    bw_u(bw, 0, 12);
    bw_u(bw, 186, 8);                  /* general_level_idc: 6.2 */
}

static void put_nal(bpg_buf *b, uint8_t h0, uint8_t h1, bpg_buf *rbsp)
{
    if (rbsp->oom)
        b->oom = 1;
    buf_byte(b, h0);
    buf_byte(b, h1);
    nal_put_escaped(b, rbsp->data, rbsp->len);
}

void bpg_write_vps(bpg_buf *b, int chroma_format_idc, int bit_depth)
{
    bpg_buf r = {0};
    bpg_bitwriter bw = {&r, 0, 0};
    bw_u(&bw, 0, 4);      /* vps_video_parameter_set_id */
    bw_u(&bw, 3, 2);      /* base_layer_internal, base_layer_available */
    bw_u(&bw, 0, 6);      /* max_layers_minus1 */
    bw_u(&bw, 0, 3);      /* max_sub_layers_minus1 */
    bw_u(&bw, 1, 1);      /* temporal_id_nesting */
    bw_u(&bw, 0xffff, 16);
    write_ptl(&bw, chroma_format_idc, bit_depth);
    bw_u(&bw, 1, 1);      /* sub_layer_ordering_info_present */
    bw_ue(&bw, 1);        /* max_dec_pic_buffering_minus1: 2 pictures (animations) */
    bw_ue(&bw, 0);        /* num_reorder_pics */
    bw_ue(&bw, 0);        /* max_latency_increase_plus1 */
    bw_u(&bw, 0, 6);      /* vps_max_layer_id */
    bw_ue(&bw, 0);        /* num_layer_sets_minus1 */
    bw_u(&bw, 0, 1);      /* timing_info_present */
    bw_u(&bw, 0, 1);      /* vps_extension */
    bw_trailing(&bw);
    put_nal(b, 32 << 1, 1, &r);
    buf_free(&r);
}

void bpg_write_sps(bpg_buf *b, const bpg_hevc_header *h, int chroma_format_idc, int width,
                   int height, int bit_depth)
{
    uint32_t cb = 1u << (h->log2_min_cb_minus3 + 3);
    bpg_buf r = {0};
    bpg_bitwriter bw = {&r, 0, 0};
    bw_u(&bw, 0, 4);      /* sps_video_parameter_set_id */
    bw_u(&bw, 0, 3);      /* max_sub_layers_minus1 */
    bw_u(&bw, 1, 1);      /* temporal_id_nesting */
    write_ptl(&bw, chroma_format_idc, bit_depth);
    bw_ue(&bw, 0);        /* sps_seq_parameter_set_id */
    bw_ue(&bw, (uint32_t)chroma_format_idc);
    if (chroma_format_idc == 3)
        bw_u(&bw, 0, 1);  /* separate_colour_plane */
    /* No conformance window: we crop the padded picture ourselves (FORMAT 11.2). */
    bw_ue(&bw, ((uint32_t)width + cb - 1) / cb * cb);
    bw_ue(&bw, ((uint32_t)height + cb - 1) / cb * cb);
    bw_u(&bw, 0, 1);      /* conformance_window_flag */
    bw_ue(&bw, (uint32_t)(bit_depth - 8));
    bw_ue(&bw, (uint32_t)(bit_depth - 8));
    bw_ue(&bw, 4);        /* log2_max_pic_order_cnt_lsb_minus4 */
    bw_u(&bw, 1, 1);      /* sub_layer_ordering_info_present */
    bw_ue(&bw, 1);
    bw_ue(&bw, 0);
    bw_ue(&bw, 0);
    bw_ue(&bw, h->log2_min_cb_minus3);
    bw_ue(&bw, h->log2_diff_max_min_cb);
    bw_ue(&bw, h->log2_min_tb_minus2);
    bw_ue(&bw, h->log2_diff_max_min_tb);
    bw_ue(&bw, h->max_th_depth_intra); /* inter = intra */
    bw_ue(&bw, h->max_th_depth_intra);
    bw_u(&bw, 0, 1);      /* scaling_list_enabled */
    bw_u(&bw, 1, 1);      /* amp_enabled */
    bw_u(&bw, (uint32_t)h->sao, 1);
    bw_u(&bw, (uint32_t)h->pcm, 1);
    if (h->pcm) {
        bw_u(&bw, (uint32_t)h->pcm_bd_luma_minus1, 4);
        bw_u(&bw, (uint32_t)h->pcm_bd_chroma_minus1, 4);
        bw_ue(&bw, h->log2_min_pcm_minus3);
        bw_ue(&bw, h->log2_diff_max_min_pcm);
        bw_u(&bw, (uint32_t)h->pcm_loop_filter_disabled, 1);
    }
    bw_ue(&bw, 0);        /* num_short_term_ref_pic_sets */
    bw_u(&bw, 0, 1);      /* long_term_ref_pics_present */
    bw_u(&bw, 1, 1);      /* sps_temporal_mvp_enabled */
    bw_u(&bw, (uint32_t)h->strong_intra_smoothing, 1);
    bw_u(&bw, 0, 1);      /* vui_parameters_present */
    bw_u(&bw, (uint32_t)h->ext_present, 1);
    if (h->ext_present) {
        bw_u(&bw, (uint32_t)h->range_ext, 1);
        bw_u(&bw, 0, 7);  /* multilayer, 3D, SCC, 4 spare */
        if (h->range_ext)
            for (int i = 0; i < 9; i++)
                bw_u(&bw, (uint32_t)h->rext[i], 1);
    }
    bw_trailing(&bw);
    put_nal(b, 33 << 1, 1, &r);
    buf_free(&r);
}
