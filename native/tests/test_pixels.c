/* SPDX-License-Identifier: GPL-2.0-or-later
 * Checks the pixel arithmetic of bpg_pixels.c against the constant tables and worked
 * examples of FORMAT.md sections 11.6.1, 11.9, 12.2 and 12.6 (the normative values).
 * Built and run by tests/test_bpg_native.py:
 *   cc -Inative native/tests/test_pixels.c native/bpg_bits.c -lm && ./a.out
 * Prints one line per failed check; exit status = number of failures. */
#include "../bpg_pixels.c"

#include <stdio.h>

static int failures = 0, checks = 0;

#define EXPECT_EQ(got, want, what)                                                             \
    do {                                                                                       \
        long long g_ = (long long)(got), w_ = (long long)(want);                              \
        checks++;                                                                              \
        if (g_ != w_) {                                                                        \
            failures++;                                                                        \
            printf("FAIL %s: got %lld, want %lld\n", what, g_, w_);                          \
        }                                                                                      \
    } while (0)

static void test_encoder_constants(void)
{
    /* 12.2 table rows: B, cs, limited, cY, cCb, cCr, yoff */
    static const struct {
        int B, cs, lim;
        int32_t cy[3], ccb[3], ccr[3], yoff;
    } T[] = {
        {8, 0, 0, {2508194, 4924113, 956301}, {-1415459, -2778845, 4194304},
         {4194304, -3512206, -682098}, 4194304},
        {8, 3, 0, {1783418, 5999532, 605657}, {-961100, -3233204, 4194304},
         {4194304, -3809711, -384593}, 4194304},
        {8, 4, 1, {1892579, 4884538, 427217}, {-1028908, -2655500, 3684408},
         {3684408, -3388076, -296332}, 138412032},
        {10, 0, 0, {2515571, 4938596, 959114}, {-1419622, -2787018, 4206640},
         {4206640, -3522536, -684104}, 1048576},
        {12, 3, 0, {1789975, 6021590, 607884}, {-964634, -3245090, 4209724},
         {4209724, -3823717, -386007}, 262144},
        {12, 0, 1, {2154096, 4228944, 821294}, {-1243384, -2441024, 3684408},
         {3684408, -3085232, -599176}, 134479872},
    };
    for (size_t t = 0; t < sizeof T / sizeof *T; t++) {
        enc_consts c;
        enc_init(&c, T[t].B, T[t].cs, T[t].lim);
        for (int k = 0; k < 3; k++) {
            EXPECT_EQ(c.cy[k], T[t].cy[k], "12.2 cY");
            EXPECT_EQ(c.ccb[k], T[t].ccb[k], "12.2 cCb");
            EXPECT_EQ(c.ccr[k], T[t].ccr[k], "12.2 cCr");
        }
        EXPECT_EQ(c.yoff, T[t].yoff, "12.2 yoff");
    }
    /* YCgCo / RGB constants (second 12.2 table): B, limited, yone, c25, c50 */
    static const int Y[][5] = {{8, 0, 8388608, 2097152, 4194304},
                               {8, 1, 7204334, 1801083, 3602167},
                               {10, 0, 8413280, 2103320, 4206640},
                               {12, 0, 8419448, 2104862, 4209724}};
    for (size_t t = 0; t < sizeof Y / sizeof *Y; t++) {
        enc_consts c;
        enc_init(&c, Y[t][0], NPP_BPG_CS_YCGCO, Y[t][1]);
        EXPECT_EQ(c.yone, Y[t][2], "12.2 yone");
        EXPECT_EQ(c.c25, Y[t][3], "12.2 c25");
        EXPECT_EQ(c.c50, Y[t][4], "12.2 c50");
    }
}

static void test_encoder_pixels(void)
{
    /* 12.6: red, green, blue, white, gray, (12,200,99) per setting, slot-major. */
    static const int RGB[6][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255},
                                  {255, 255, 255}, {128, 128, 128}, {12, 200, 99}};
    static const struct {
        int B, cs, lim;
        int want[3][6];
    } T[] = {
        {8, 0, 0, {{76, 150, 29, 255, 128, 132}, {85, 44, 255, 128, 128, 109},
                   {255, 21, 107, 128, 128, 42}}},
        {8, 0, 1, {{81, 145, 41, 235, 126, 130}, {90, 54, 240, 128, 128, 112},
                   {240, 34, 110, 128, 128, 53}}},
        {10, 0, 0, {{306, 601, 117, 1023, 514, 531}, {339, 173, 1023, 512, 512, 437},
                    {1023, 84, 429, 512, 512, 168}}},
        {8, 3, 0, {{54, 182, 18, 255, 128, 153}, {99, 30, 255, 128, 128, 99},
                   {255, 12, 116, 128, 128, 39}}},
        {8, 2, 0, {{64, 128, 64, 255, 128, 128}, {64, 255, 64, 128, 128, 200},
                   {255, 128, 1, 128, 128, 85}}},
        {10, 1, 0, {{0, 1023, 0, 1023, 514, 802}, {0, 0, 1023, 1023, 514, 397},
                    {1023, 0, 0, 1023, 514, 48}}},
    };
    for (size_t t = 0; t < sizeof T / sizeof *T; t++) {
        enc_consts c;
        enc_init(&c, T[t].B, T[t].cs, T[t].lim);
        for (int p = 0; p < 6; p++) {
            uint16_t v[3];
            enc_pixel(&c, T[t].cs, 0, RGB[p][0], RGB[p][1], RGB[p][2], v);
            for (int k = 0; k < 3; k++)
                EXPECT_EQ(v[k], T[t].want[k][p], "12.6 colour conversion");
        }
    }
}

static void test_decimation(void)
{
    /* 12.6: rows [0,0,0,255,255,255,255], w = 7. */
    uint16_t src[3 * 7];
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 7; x++)
            src[y * 7 + x] = (y == 2 || x >= 3) ? 255 : 0;
    uint16_t out[2 * 4];
    bpg_plane d = {out, 4, 2, 4};
    static const int W422_1[4] = {0, 128, 255, 251}, W422_5[4] = {0, 64, 255, 249};
    decimate(src, 7, 1, 8, NPP_BPG_FORMAT_422, &d);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(out[i], W422_1[i], "12.6 4:2:2 D1 decimation");
    decimate(src, 7, 1, 8, NPP_BPG_FORMAT_422_VIDEO, &d);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(out[i], W422_5[i], "12.6 4:2:2 D0 decimation");
    static const int W420_1[8] = {0, 134, 255, 251, 240, 248, 255, 255};
    static const int W420_4[8] = {0, 74, 255, 249, 240, 245, 255, 255};
    decimate(src, 7, 3, 8, NPP_BPG_FORMAT_420, &d);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(out[i], W420_1[i], "12.6 4:2:0 decimation (JPEG siting)");
    decimate(src, 7, 3, 8, NPP_BPG_FORMAT_420_VIDEO, &d);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(out[i], W420_4[i], "12.6 4:2:0 decimation (MPEG-2 siting)");
}

static void test_padding(void)
{
    /* 12.4 / 12.6: 451x300 4:2:0 -> 456x304 luma, 228x152 chroma, edge replication. */
    uint8_t *rgb = malloc(451 * 300 * 3);
    for (int i = 0; i < 451 * 300 * 3; i++)
        rgb[i] = (uint8_t)(((unsigned)i * 7919u) >> 3);
    bpg_plane pl[3];
    int rc = bpg_prepare_planes(rgb, 451, 300, 3, 451 * 3, NPP_BPG_FORMAT_420, 8, 0, 0, pl, NULL);
    EXPECT_EQ(rc, 0, "12.4 prepare");
    EXPECT_EQ(pl[0].w, 456, "12.4 luma width");
    EXPECT_EQ(pl[0].h, 304, "12.4 luma height");
    EXPECT_EQ(pl[1].w, 228, "12.4 chroma width");
    EXPECT_EQ(pl[1].h, 152, "12.4 chroma height");
    int bad = 0;
    for (int y = 0; y < 304; y++)
        for (int x = 0; x < 456; x++)
            bad += pl[0].p[y * 456 + x] != pl[0].p[(y < 300 ? y : 299) * 456 + (x < 451 ? x : 450)];
    for (int y = 0; y < 152; y++)
        for (int x = 0; x < 228; x++)
            bad += pl[2].p[y * 228 + x] != pl[2].p[(y < 150 ? y : 149) * 228 + (x < 226 ? x : 225)];
    EXPECT_EQ(bad, 0, "12.4 padding replicates the last real column/row");
    for (int k = 0; k < 3; k++)
        free(pl[k].p);
    free(rgb);
}

static void test_decoder_constants(void)
{
    /* 11.6.1 rows: B, O, cs, limited, yone, yoff, cRCr, cGCb, cGCr, cBCb */
    static const int32_t T[][10] = {
        {8, 8, 0, 0, 4194304, 2097152, 5880414, 1443412, 2995305, 7432307},
        {8, 8, 0, 1, 4883779, -76043312, 6694222, 1643170, 3409833, 8460885},
        {10, 8, 3, 0, 1045501, 2097152, 1646455, 195848, 489424, 1940032},
        {12, 8, 4, 1, 305236, -76043264, 440054, 49106, 170505, 561453},
        {8, 16, 4, 0, 4210688, 8192, 6209081, 692882, 2405790, 7921988},
        {10, 16, 0, 1, 1225714, -78437504, 1680093, 412397, 855788, 2123484},
        {12, 16, 3, 1, 306428, -78437376, 471792, 56120, 140245, 555917},
    };
    for (size_t t = 0; t < sizeof T / sizeof *T; t++) {
        dec_consts c;
        dec_init(&c, T[t][0], T[t][1], T[t][2], T[t][3]);
        EXPECT_EQ(c.yone, T[t][4], "11.6.1 yone");
        EXPECT_EQ(c.yoff, T[t][5], "11.6.1 yoff");
        EXPECT_EQ(c.crcr, T[t][6], "11.6.1 cRCr");
        EXPECT_EQ(c.cgcb, T[t][7], "11.6.1 cGCb");
        EXPECT_EQ(c.cgcr, T[t][8], "11.6.1 cGCr");
        EXPECT_EQ(c.cbcb, T[t][9], "11.6.1 cBCb");
    }
}

/* Convert one 4:4:4 pixel through the public plane path. */
static void convert1(int B, int O, int cs, int lim, int y, int cb, int cr, int out[3])
{
    uint16_t s[3] = {(uint16_t)y, (uint16_t)cb, (uint16_t)cr};
    uint8_t s8[3] = {(uint8_t)y, (uint8_t)cb, (uint8_t)cr};
    bpg_src_plane pl[3];
    for (int k = 0; k < 3; k++) {
        pl[k].p = B == 8 ? &s8[k] : (const uint8_t *)&s[k];
        pl[k].stride_bytes = B == 8 ? 1 : 2;
        pl[k].w = pl[k].h = 1;
    }
    uint16_t o16[3];
    uint8_t o8[3];
    bpg_planes_to_rgb(pl, 1, 1, NPP_BPG_FORMAT_444, B, cs, lim, O, O == 8 ? o8 : (uint8_t *)o16,
                      NULL);
    for (int k = 0; k < 3; k++)
        out[k] = O == 8 ? o8[k] : o16[k];
}

static void test_decoder_pixels(void)
{
    /* 11.9: Y=100, Cb=90, Cr=200 (B = 8) */
    static const struct {
        int cs, lim, o8[3], o16[3];
    } T[] = {
        {0, 0, {201, 62, 33}, {51643, 15846, 8395}},
        {0, 1, {213, 54, 21}, {54670, 13920, 5436}},
        {3, 0, {213, 73, 29}, {54840, 18867, 7578}},
        {4, 0, {206, 65, 29}, {52986, 16735, 7326}},
        {2, 0, {210, 62, 66}, {53970, 15934, 16962}},
    };
    for (size_t t = 0; t < sizeof T / sizeof *T; t++) {
        int o[3];
        convert1(8, 8, T[t].cs, T[t].lim, 100, 90, 200, o);
        for (int k = 0; k < 3; k++)
            EXPECT_EQ(o[k], T[t].o8[k], "11.9 conversion, 8-bit output");
        convert1(8, 16, T[t].cs, T[t].lim, 100, 90, 200, o);
        for (int k = 0; k < 3; k++)
            EXPECT_EQ(o[k], T[t].o16[k], "11.9 conversion, 16-bit output");
    }
    int o[3];
    convert1(10, 8, 0, 0, 400, 360, 800, o);
    EXPECT_EQ(o[0], 200, "11.9 B=10 R");
    EXPECT_EQ(o[1], 61, "11.9 B=10 G");
    EXPECT_EQ(o[2], 33, "11.9 B=10 B");
    convert1(10, 16, 0, 0, 400, 360, 800, o);
    EXPECT_EQ(o[0], 51491, "11.9 B=10 O=16 R");
    EXPECT_EQ(o[1], 15800, "11.9 B=10 O=16 G");
    EXPECT_EQ(o[2], 8370, "11.9 B=10 O=16 B");
    /* bit-depth mapping of 10-bit RGB samples */
    static const int V[9] = {0, 1, 2, 3, 4, 511, 512, 1022, 1023};
    static const int W8[9] = {0, 0, 0, 1, 1, 127, 128, 255, 255};
    static const int W16[9] = {0, 64, 128, 192, 256, 32735, 32800, 65471, 65535};
    for (int i = 0; i < 9; i++) {
        convert1(10, 8, NPP_BPG_CS_RGB, 0, V[i], V[i], V[i], o);
        EXPECT_EQ(o[0], W8[i], "11.9 10-bit -> 8-bit mapping");
        convert1(10, 16, NPP_BPG_CS_RGB, 0, V[i], V[i], V[i], o);
        EXPECT_EQ(o[0], W16[i], "11.9 10-bit -> 16-bit mapping");
    }
    /* 32-bit wrap-around: BT.601 limited, Y=255, Cb=255, Cr=128 -> (255, 229, 0) */
    convert1(8, 8, 0, 1, 255, 255, 128, o);
    EXPECT_EQ(o[0], 255, "11.9 wrap R");
    EXPECT_EQ(o[1], 229, "11.9 wrap G");
    EXPECT_EQ(o[2], 0, "11.9 wrap B (wrapped to negative)");
}

static void test_upsampling(void)
{
    static const uint16_t C[8] = {10, 200, 30, 40, 250, 0, 90, 128};
    static const int U1[4][8] = {{0, 48, 192, 204, 81, 0, 9, 44},
                                 {47, 91, 149, 141, 72, 30, 46, 68},
                                 {215, 163, 75, 32, 57, 95, 109, 108},
                                 {255, 205, 32, 0, 48, 132, 145, 132}};
    static const int U4[4][8] = {{0, 128, 222, 152, 23, 0, 30, 44},
                                 {63, 124, 156, 109, 43, 33, 59, 68},
                                 {198, 118, 44, 37, 77, 104, 109, 109},
                                 {255, 114, 0, 0, 97, 146, 138, 133}};
    uint16_t U[32];
    upsample_420(C, 4, 2, 8, 4, 8, 0, U);
    for (int i = 0; i < 32; i++)
        EXPECT_EQ(U[i], U1[i / 8][i % 8], "11.9 4:2:0 upsampling (format 1)");
    upsample_420(C, 4, 2, 8, 4, 8, 1, U);
    for (int i = 0; i < 32; i++)
        EXPECT_EQ(U[i], U4[i / 8][i % 8], "11.9 4:2:0 upsampling (format 4)");
    static const int R2[8] = {0, 63, 178, 183, 78, 5, 21, 52};
    static const int R5[8] = {10, 127, 200, 138, 30, 5, 40, 52};
    upsample_422(C, 4, 8, 1, 8, 0, U);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(U[i], R2[i], "11.9 4:2:2 upsampling (format 2)");
    upsample_422(C, 4, 8, 1, 8, 1, U);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(U[i], R5[i], "11.9 4:2:2 upsampling (format 5)");
}

int main(void)
{
    test_encoder_constants();
    test_encoder_pixels();
    test_decimation();
    test_padding();
    test_decoder_constants();
    test_decoder_pixels();
    test_upsampling();
    printf("%d checks, %d failures\n", checks, failures);
    return failures > 125 ? 125 : failures;
}
