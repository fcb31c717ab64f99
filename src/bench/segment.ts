/**
 * Segmentation throughput (part of `npm run bench`): a ViT-S/14 backbone (random weights, 4 registers) with
 * CXformer's linear head (1×1 conv + bilinear upsampling, frozen backbone, docs/recipe.md §5.2) at BENCH_SEG_SIZE px (default
 * 224): training steps (forward of the frozen backbone under no_grad, head forward/backward, AdamW) and inference
 * (argmax class maps), median of BENCH_SEG_RUNS timed calls after one warm-up. Writes bench-results/segment.json.
 * Env: BENCH_SEG_SIZE (224; 518 on a GPU), BENCH_SEG_BATCH (8), BENCH_SEG_RUNS (5), BENCH_SEG_HEAD (linear |
 * progressive), BENCH_SEG_PRECISION (f32 | bf16), BENCH_DEVICE (cpu), CXFORMER_THREADS.
 * GPU: BENCH_DEVICE=cuda BENCH_SEG_SIZE=518 BENCH_SEG_PRECISION=bf16 BENCH_SEG_BATCH=32 node dist/bench/segment.js
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { threadCount } from '../backbone.js';
import { presetConfig } from '../model/config.js';
import { Segmenter } from '../segment/native.js';
import { timed } from './flops.js';


async function main() {
  const size = Number(process.env.BENCH_SEG_SIZE ?? 224);
  const B = Number(process.env.BENCH_SEG_BATCH ?? 8);
  const runs = Number(process.env.BENCH_SEG_RUNS ?? 5);
  const head = (process.env.BENCH_SEG_HEAD ?? 'linear') as 'linear' | 'progressive';
  const precision = (process.env.BENCH_SEG_PRECISION ?? 'f32') as 'f32' | 'bf16';
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const cfg = { ...presetConfig('vit_small'), num_register_tokens: 4, img_size: size };
  const model = await Segmenter.create({ seg: { head, precision }, backbone: cfg, device });
  const n = B * 3 * size * size;
  const x = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = (s >>> 8) / 2 ** 24 - 0.5;
  }
  const labels = new Uint8Array(B * size * size).map((_, i) => Math.floor(((i % size) * 4) / size)); // 4 vertical stripes
  const shape: [number, number, number, number] = [B, 3, size, size];
  const time = (f: () => Promise<unknown>) => timed(runs, f);
  const stepS = await time(() => model.step(x, shape, labels, 1e-3));
  const predS = await time(() => model.predict(x, shape));
  const result = {
    machine: `${os.cpus()[0]?.model} (${os.cpus().length} logical CPUs)`,
    threads: threadCount() || os.cpus().length,
    device,
    backbone: 'vit_small/14, 4 registers, random weights, frozen',
    head,
    precision,
    size,
    batch: B,
    runs,
    train_step_s: stepS,
    train_images_per_s: B / stepS,
    predict_s: predS,
    predict_images_per_s: B / predS,
  };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/segment.json', `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`segmentation (${head} head, ViT-S/14 ${size} px, batch ${B}, ${precision}, ${device}): train ${result.train_images_per_s.toFixed(2)} img/s (${stepS.toFixed(2)} s/step), inference ${result.predict_images_per_s.toFixed(2)} img/s\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:segment: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
