/**
 * Classification throughput (part of `npm run bench`), ViT-S/14 with 4 registers (random init), on BENCH_DEVICE:
 * 1. linear-probe features: images/s of the feature forward (last 4 blocks' normed CLS + patch mean, batch 8,
 *    224 px, f32; pixel tensors, decoding excluded), median of BENCH_RUNS;
 * 2. full fine-tuning step: images/s of one training step (forward in train mode, masked BCE, backward through the
 *    backbone, clipping, AdamW over 22 M parameters; batch 10, 224 px, 5 classes; bf16 autocast on CUDA, as
 *    `finetune --mode full`), on normalised pixels and on
 *    256-px gray images with the §5.1 augmentations executed natively; median of BENCH_RUNS after a warm-up;
 * 3. the linear-probe head itself (5·384 = 1920 features → 5 classes, batch 10, lr 5e-5, docs/recipe.md §5.1) on N random
 *    feature rows, a few epochs.
 * Writes bench-results/finetune.json. Env: BENCH_DEVICE (cpu), BENCH_RUNS (5), BENCH_ROWS (20000),
 * BENCH_EPOCHS (3), BENCH_FT_SIZE (224), CXFORMER_THREADS.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { loadBackbone, threadCount } from '../backbone.js';
import { planFinetuneBatch } from '../finetune/augment.js';
import { fitLinearProbe } from '../finetune/probe.js';
import { presetConfig } from '../model/config.js';
import { native } from '../native/load.js';
import { timed } from './flops.js';

/** Feature extraction and fine-tuning step throughput of ViT-S/14 at BENCH_FT_SIZE px (224; 518 on a GPU). */
async function backboneRates(device: string, runs: number) {
  const size = Number(process.env.BENCH_FT_SIZE ?? 224);
  if (!(Number.isInteger(size) && size % 14 === 0 && size > 0)) throw new Error(`BENCH_FT_SIZE must be a positive multiple of 14, got ${process.env.BENCH_FT_SIZE}`);
  const pixels = (b: number) => new Float32Array(b * 3 * size * size).map((_, i) => Math.sin(i * 0.37) * 1.5);
  // 1. linear-probe features (what src/finetune/features.ts asks the backbone for).
  const model = await loadBackbone({ arch: 'vit_small', device, threads: threadCount() });
  const xb = pixels(8);
  const sFeat = await timed(runs, () => model.embed(xb, [8, 3, size, size], { layers: [-4, -3, -2, -1], normLayers: true }));
  // 2. fine-tuning steps, batch 10, 5 classes.
  const B = 10;
  const C = 5;
  const ft = await native().createFinetuner(
    JSON.stringify({ config: { model: presetConfig('vit_small'), numClasses: C, headLr: 5e-5, backboneLr: 5e-7, stepsPerEpoch: 1000, precision: device.startsWith('cuda') ? 'bf16' : 'f32' }, device }),
  );
  const x = pixels(B);
  const y = new Float32Array(B * C).map((_, i) => (i % 3 === 0 ? 1 : 0));
  const m = new Uint8Array(B * C).fill(1);
  const sStep = await timed(runs, () => ft.stepPixels(x, [B, 3, size, size], y, [B, C], m));
  const side = Math.round((size * 256) / 224); // the §5.1 source side for this crop size
  const planes = new Uint8Array(B * side * side).map((_, i) => (i * 7) % 251);
  const sizes = Array.from({ length: B }, () => [side, side]).flat();
  let step = 0;
  const sAug = await timed(runs, () => {
    const crops = planFinetuneBatch(0, step++, Array.from({ length: B }, () => [side, side] as [number, number]), size);
    return ft.stepImages(planes, sizes, JSON.stringify(crops), size, y, [B, C], m);
  });
  return {
    size,
    features: { batch: 8, median_s: sFeat, images_per_s: 8 / sFeat },
    step_pixels: { batch: B, median_s: sStep, images_per_s: B / sStep },
    step_augmented: { batch: B, source: `${side}x${side} gray`, median_s: sAug, images_per_s: B / sAug },
    runs,
  };
}

async function main() {
  const n = Number(process.env.BENCH_ROWS ?? 20000);
  const epochs = Number(process.env.BENCH_EPOCHS ?? 3);
  const F = 1920;
  const C = 5;
  native().setThreads(threadCount());
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const runs = Number(process.env.BENCH_RUNS ?? 5);
  const vit = await backboneRates(device, runs);
  process.stdout.write(
    `ViT-S/14 at ${vit.size} px (${device}): features ${vit.features.images_per_s.toFixed(2)} img/s (batch 8); ` +
      `fine-tuning step ${vit.step_pixels.images_per_s.toFixed(2)} img/s on pixels, ${vit.step_augmented.images_per_s.toFixed(2)} img/s with the §5.1 augmentations (batch 10); median of ${runs}\n`,
  );
  const x = new Float32Array(n * F);
  let s = 1;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = (s >>> 8) / 2 ** 24 - 0.5;
  }
  const y = new Float32Array(n * C).map((_, i) => ((x[(Math.floor(i / C) * F + (i % C)) | 0] as number) > 0 ? 1 : 0));
  const t0 = performance.now();
  const fit = await fitLinearProbe({ features: { data: x, shape: [n, F] }, targets: { data: y, shape: [n, C] }, config: { epochs, batchSize: 10, lr: 5e-5 } });
  const s_per_epoch = (performance.now() - t0) / 1000 / epochs;
  const result = { machine: `${os.cpus()[0]?.model} (${os.cpus().length} logical CPUs)`, threads: threadCount() || os.cpus().length, device, vit_small: vit, rows: n, features: F, classes: C, batch: 10, epochs, s_per_epoch, rows_per_s: n / s_per_epoch, final_train_loss: fit.history.at(-1)?.trainLoss };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/finetune.json', `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`linear head (1920 → 5, batch 10): ${result.rows_per_s.toFixed(0)} rows/s, ${s_per_epoch.toFixed(2)} s per epoch of ${n} rows\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:finetune: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
