// SPDX-License-Identifier: GPL-2.0-or-later
// Reference outputs of the CenterNet TF.js graph model from the pure-JavaScript TF.js runtime
// (@tensorflow/tfjs, CPU backend, no native binary), for tests/test_centernet_reference.py.
//
// Not run by the tests: scripts/centernet_reference/make_reference.py prepares the 512x512
// inputs, runs this under node and writes tests/data/centernet/. Usage (by that script):
//
//   node reference.js MODEL_DIR INPUT_DIR OUT.json
//
// MODEL_DIR holds centernet.json + centernet.bin; INPUT_DIR holds NAME.rgb (512*512*3 uint8,
// row-major RGB) files. OUT.json gets, per input, the 100 detections (x1, y1, x2, y2, score,
// class in 512-px coordinates), a summary of the heatmap tower_0/keypoints and of tower_0/wh,
// and op checks: ResizeBilinear / ResizeNearestNeighbor under every align_corners /
// half_pixel_centers setting, and 'SAME' convolutions and max pooling with stride 2.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function r(x) { return Math.round(x * 1e6) / 1e6; }

async function loadModel(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'centernet.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, 'centernet.bin'));
  const handler = {
    load: async () => ({
      modelTopology: json.modelTopology,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
      signature: json.signature,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  };
  return tf.loadGraphModel(handler);
}

function heatmapSummary(hm) {  // hm: Float32Array of 128*128*80 (HWC)
  const C = 80, W = 128;
  let sum = 0, max = 0;
  const classMax = new Array(C).fill(0);
  for (let i = 0; i < hm.length; i++) {
    const v = hm[i];
    sum += v;
    if (v > max) max = v;
    const c = i % C;
    if (v > classMax[c]) classMax[c] = v;
  }
  // top 50 values (by value, then index), with their (y, x, c)
  const top = Array.from(hm.keys()).sort((a, b) => hm[b] - hm[a] || a - b).slice(0, 50);
  return {
    sum: r(sum), max: r(max), mean: r(sum / hm.length),
    class_max: classMax.map(r),
    top: top.map((i) => [Math.floor(i / C / W), Math.floor(i / C) % W, i % C, r(hm[i])]),
  };
}

function opChecks() {
  const out = { resize: [], conv: [] };
  // a fixed, irregular input (no RNG needed): NHWC 1x5x7x2
  const vals = Array.from({ length: 5 * 7 * 2 }, (_, i) => Math.sin(i * 1.7) * 3 + (i % 5));
  const x = tf.tensor4d(vals, [1, 5, 7, 2]);
  for (const size of [[8, 11], [3, 4], [10, 14], [1, 1]]) {
    for (const alignCorners of [false, true]) {
      for (const halfPixelCenters of [false, true]) {
        if (alignCorners && halfPixelCenters) continue;  // TF refuses this pair
        for (const op of ['ResizeBilinear', 'ResizeNearestNeighbor']) {
          const f = op === 'ResizeBilinear' ? tf.image.resizeBilinear : tf.image.resizeNearestNeighbor;
          const y = f(x, size, alignCorners, halfPixelCenters);
          out.resize.push({ op, size, align_corners: alignCorners, half_pixel_centers: halfPixelCenters,
                            shape: y.shape, values: Array.from(y.dataSync()).map(r) });
        }
      }
    }
  }
  out.resize_input = { shape: x.shape, values: vals.map(r) };
  // 'SAME' convolutions with stride 2 on even and odd sizes (TF pads more on the bottom/right)
  for (const hw of [6, 7, 8]) {
    const xin = Array.from({ length: hw * hw * 3 }, (_, i) => Math.cos(i * 0.37) + (i % 3) * 0.1);
    const xt = tf.tensor4d(xin, [1, hw, hw, 3]);
    for (const k of [3, 5]) {
      const w = Array.from({ length: k * k * 3 * 2 }, (_, i) => Math.sin(i * 0.91));
      const wt = tf.tensor4d(w, [k, k, 3, 2]);
      const conv = tf.conv2d(xt, wt, 2, 'same');
      const dw = tf.depthwiseConv2d(xt, tf.tensor4d(w.slice(0, k * k * 3), [k, k, 3, 1]), 2, 'same');
      const pool = tf.maxPool(xt, k, 2, 'same');
      out.conv.push({ hw, k, stride: 2, input: xin.map(r), filter: w.map(r),
                      conv2d: { shape: conv.shape, values: Array.from(conv.dataSync()).map(r) },
                      depthwise: { shape: dw.shape, values: Array.from(dw.dataSync()).map(r) },
                      maxpool: { shape: pool.shape, values: Array.from(pool.dataSync()).map(r) } });
    }
  }
  return out;
}

async function main() {
  const [modelDir, inputDir, outPath] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await loadModel(modelDir);
  const names = fs.readdirSync(inputDir).filter((f) => f.endsWith('.rgb')).sort();
  const images = {};
  for (const name of names) {
    const raw = fs.readFileSync(path.join(inputDir, name));
    const x = tf.tensor4d(Float32Array.from(raw), [1, 512, 512, 3]);
    const t0 = Date.now();
    const [det, hm, wh] = model.execute(x, ['tower_0/detections', 'tower_0/keypoints', 'tower_0/wh']);
    const dets = det.arraySync()[0].map((row) => row.map(r));
    const whv = wh.dataSync();
    let whSum = 0;
    for (const v of whv) whSum += v;
    images[name.replace(/\.rgb$/, '')] = {
      ms: Date.now() - t0, detections: dets, heatmap: heatmapSummary(hm.dataSync()),
      wh: { sum: r(whSum), first: Array.from(whv.slice(0, 16)).map(r) },
    };
    process.stderr.write(`${name}: ${Date.now() - t0} ms\n`);
  }
  const out = { tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version, images, ops: opChecks() };
  fs.writeFileSync(outPath, JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
