/**
 * `npm run bench:train` (part of `npm run bench`): pretraining step throughput for the CPU
 * configuration — ViT-S/14 with 4 registers, 2 global crops of 98 px, 4 local crops of 42 px, batch 8,
 * DINO head K=4096 (hidden 2048, bottleneck 256), shared iBOT head, centering, KoLeo, AdamW, fp32 — through
 * the real `train()` loop on phantom images, as the median of ≥ 10 steps after 3 warm-up steps, with the
 * per-stage split; and the native multi-crop augmentation alone (crop sets/s). Writes bench-results/train.json.
 *
 * Env: CXFORMER_THREADS, BENCH_DEVICE (cpu | cuda), BENCH_PRECISION (fp32 | bf16), BENCH_STEPS (default 13),
 * BENCH_REAL=1 for CXformer's real sizes (518/98, 8 locals, batch 64, K=16384, separate iBOT head; GPU).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { planBatch } from '../augment/plan.js';
import { threadCount } from '../backbone.js';
import { synthDataset } from '../data/synth.js';
import { native } from '../native/load.js';
import { loadTrainImage } from '../cache/planes.js';
import { train, type StepRecord } from '../train/run.js';
import { forwardFlops, median } from './flops.js';



async function main() {
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const precision = process.env.BENCH_PRECISION ?? 'fp32';
  const real = process.env.BENCH_REAL === '1';
  const steps = Number(process.env.BENCH_STEPS ?? 13);
  const warm = 3;
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'cxf-bench-train-'));
  const data = path.join(tmp, 'data');
  const B = real ? 64 : 8;
  const G = real ? 518 : 98;
  const L = real ? 98 : 42;
  const nLocal = real ? 8 : 4;
  const K = real ? 16384 : 4096;
  await synthDataset({ out: data, n: Math.max(2 * B, 32), seed: 1, size: 512 });
  const overrides = [
    `output=${path.join(tmp, 'run')}`,
    `data.root=${data}`,
    `compute.device=${device}`,
    `compute.precision=${precision}`,
    `compute.threads=${threadCount()}`,
    `train.batch_size_per_gpu=${B}`,
    `train.OFFICIAL_EPOCH_LENGTH=${steps}`,
    'optim.epochs=1',
    'optim.warmup_epochs=0',
    `crops.global_crops_size=${G}`,
    `crops.local_crops_size=${L}`,
    `crops.local_crops_number=${nLocal}`,
    `dino.head_n_prototypes=${K}`,
    `dino.head_bottleneck_dim=${real ? 384 : 256}`,
    `ibot.separate_head=${real}`,
    `ibot.head_n_prototypes=${K}`,
    'checkpoint.period_iterations=100000',
    'checkpoint.keep_last=1',
  ];
  const recs: Array<StepRecord & { images_per_s: number; it_per_s: number }> = [];
  const t0 = performance.now();
  await train({ overrides, profile: true, onEvent: (e) => e.kind === 'step' && e.record && recs.push(e.record), stopAfter: steps });
  const wall = (performance.now() - t0) / 1000;
  const measured = recs.slice(warm);
  const stage = (k: keyof StepRecord) => median(measured.map((r) => r[k] as number));
  const stepMs = median(measured.map((r) => (B / r.images_per_s) * 1000));

  // Augmentation alone: the native multi-crop executor on B decoded phantoms.
  const bind = native();
  const files = (await readdir(path.join(data, 'images'))).sort().slice(0, B);
  const ok = await Promise.all(files.map((f) => loadTrainImage(path.join(data, 'images', f), { equalize: true, baseSize: null })));
  const planes = Buffer.concat(ok.map((im) => Buffer.from(im.data)));
  const sizes = ok.flatMap((im) => [im.height, im.width]);
  const mc = { globalSize: G, localSize: L, nGlobal: 2, nLocal, globalScale: [0.32, 1] as [number, number], localScale: [0.05, 0.32] as [number, number], affine: true };
  const augTimes: number[] = [];
  for (let r = 0; r < 8; r++) {
    const crops = JSON.stringify(planBatch(0, 0, r, ok.map((im) => [im.height, im.width] as [number, number]), mc));
    const t = performance.now();
    bind.multicropImages(new Uint8Array(planes), sizes, crops, G, L, device);
    augTimes.push(performance.now() - t);
  }
  const augMs = median(augTimes.slice(2));
  const flops = 3 * (2 * forwardFlops(G) + nLocal * forwardFlops(L)) + 2 * forwardFlops(G); // student fwd+bwd ≈ 3×fwd, teacher fwd on 2 globals
  const result = {
    machine: `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} logical CPUs)`,
    threads: threadCount() || os.cpus().length,
    device,
    precision,
    config: { B, G, L, nLocal, K, separate_ibot_head: real, backbone: 'vit_small p14 reg4 (12 blocks)' },
    steps: { warmup: warm, measured: measured.length },
    step_ms: stepMs,
    images_per_s: (B / stepMs) * 1000,
    backbone_tflops_per_s: ((flops * B) / (stepMs / 1000)) / 1e12,
    stages_ms: {
      augment: stage('ms_augment'),
      teacher_forward: stage('ms_teacher'),
      student_forward_and_losses: stage('ms_student'),
      backward: stage('ms_backward'),
      clip_and_optimizer: stage('ms_optimizer'),
      ema: stage('ms_ema'),
      data_wait: stage('ms_data_wait'),
    },
    augmentation_only: { ms_per_batch: augMs, crop_sets_per_s: (ok.length / augMs) * 1000 },
    total_wall_s: wall,
  };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/train.json', `${JSON.stringify(result, null, 2)}\n`);
  const s = result.stages_ms;
  process.stdout.write(
    [
      `train step (${device}, ${precision}, ${result.threads} threads): B=${B}, ${G}/${L} px, 2+${nLocal} crops, K=${K}`,
      `  ${result.images_per_s.toFixed(2)} images/s, ${stepMs.toFixed(0)} ms/step (median of ${measured.length} after ${warm} warm-up)`,
      `  stages (ms): augment ${s.augment.toFixed(0)} | teacher fwd ${s.teacher_forward.toFixed(0)} | student fwd + losses ${s.student_forward_and_losses.toFixed(0)} | backward ${s.backward.toFixed(0)} | clip + AdamW ${s.clip_and_optimizer.toFixed(0)} | EMA ${s.ema.toFixed(0)} | waiting for data ${s.data_wait.toFixed(0)}`,
      `  augmentation alone: ${result.augmentation_only.crop_sets_per_s.toFixed(1)} crop sets/s (${augMs.toFixed(1)} ms per batch of ${ok.length})`,
      `  backbone model FLOP rate: ${result.backbone_tflops_per_s.toFixed(3)} TFLOP/s (heads excluded)`,
      '',
    ].join('\n'),
  );
  await rm(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`bench:train: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
