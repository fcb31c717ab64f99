/**
 * `node dist/bench/train.js` (part of `npm run bench`): the pretraining step through the real `train()` loop on phantom
 * images (median of the steps after 3 warm-ups, with the per-stage split), in two configurations at the CPU sizes
 * (ViT-S/14 with 4 registers, 2 global crops of 98 px + 4 local crops of 42 px, batch 8, DINO head K = 4096 /
 * hidden 2048 / bottleneck 256 shared with iBOT, fp32):
 *
 * - `reference`: the configuration of the side-by-side comparison with the official DINOv2 code
 *   (BENCHMARKS.md): DINOv2's optimizer values (wd 0.04, layer-wise decay 0.9, patch-embed lr ×0.2, clip 3,
 *   last layer trained, lr 0.004·sqrt(B/1024)), EMA 0.992, teacher temperature 0.04, no RandomAffine, no
 *   equalisation, LayerScale 1e-5, drop path 0; data decoded before each step (no prefetch), as the official timer
 *   builds its batches before timing;
 * - `cxformer`: configs/pretrain/default.yaml (CXformer's recipe, prefetch on) at the same sizes.
 *
 * Each row also times the native multi-crop augmentation alone with that row's crop settings. When REF_PY (a
 * Python with torch 2.11) and DINOV2_SRC (the official dinov2 package) are set, the official step timer
 * (time_train_step.py in REF_TIMERS, default: the folder that holds DINOV2_SRC) and the `reference` row run
 * alternately BENCH_SBS_RUNS times (default 3) and the medians and their ratio are printed and recorded.
 *
 * Env: CXFORMER_THREADS, BENCH_DEVICE (cpu | cuda), BENCH_PRECISION (fp32 | bf16), BENCH_STEPS (default 13),
 * BENCH_REAL=1 for CXformer's real sizes (518/98, 8 locals, batch 64, K=16384, separate iBOT head; GPU; the
 * `cxformer` row only). Writes bench-results/train.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { planBatch } from '../augment/plan.js';
import { threadCount } from '../backbone.js';
import { loadTrainImage } from '../cache/planes.js';
import { synthDataset } from '../data/synth.js';
import { native } from '../native/load.js';
import { train, type StepRecord } from '../train/run.js';
import { forwardFlops, machineLine, median } from './flops.js';
import { referenceConfiguration } from './reference-config.js';

interface Sizes {
  B: number;
  G: number;
  L: number;
  nLocal: number;
  K: number;
  real: boolean;
}

interface Row {
  config: 'reference' | 'cxformer';
  /** Median per step: the native stages (teacher + student + backward + clip/AdamW + EMA), what the official timer times. */
  model_step_ms: number;
  /** Median whole iteration: the model step plus augmentation, waiting for decoded data and the loop itself. */
  iteration_ms: number;
  images_per_s: number;
  backbone_tflops_per_s: number;
  stages_ms: Record<string, number>;
  augmentation_only: { affine: boolean; equalize: boolean; ms_per_batch: number; crop_sets_per_s: number };
}

async function runRow(config: Row['config'], z: Sizes, data: string, tmp: string, steps: number): Promise<Row> {
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const precision = process.env.BENCH_PRECISION ?? 'fp32';
  const warm = 3;
  const { B, G, L, nLocal, K, real } = z;
  const overrides = [
    `output=${path.join(tmp, `run-${config}-${Date.now()}`)}`,
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
    // The official timer builds its batches before timing: decode and augment before each step, not overlapping it
    // on the same cores, so that the model step is timed alone; the iteration is then decode + augmentation + step in
    // sequence, as the official single-process pipeline.
    ...(config === 'reference' ? [...referenceConfiguration(B), 'data.prefetch_batches=0'] : []),
  ];
  const recs: Array<StepRecord & { images_per_s: number }> = [];
  await train({ overrides, profile: true, onEvent: (e) => e.kind === 'step' && e.record && recs.push(e.record), stopAfter: steps });
  const m = recs.slice(warm);
  const stage = (k: keyof StepRecord) => median(m.map((r) => r[k] as number));
  const modelMs = median(m.map((r) => r.ms_teacher + r.ms_student + r.ms_backward + r.ms_optimizer + r.ms_ema));
  const iterMs = median(m.map((r) => (B / r.images_per_s) * 1000));

  // Augmentation alone: the native multi-crop executor on B decoded phantoms, with this row's crop settings.
  const affine = config === 'cxformer';
  const equalize = config === 'cxformer';
  const files = (await readdir(path.join(data, 'images'))).sort().slice(0, B);
  const ims = await Promise.all(files.map((f) => loadTrainImage(path.join(data, 'images', f), { equalize, baseSize: null })));
  const planes = Buffer.concat(ims.map((im) => Buffer.from(im.data)));
  const sizes = ims.flatMap((im) => [im.height, im.width]);
  const mc = { globalSize: G, localSize: L, nGlobal: 2, nLocal, globalScale: [0.32, 1] as [number, number], localScale: [0.05, 0.32] as [number, number], affine };
  const augTimes: number[] = [];
  for (let r = 0; r < 8; r++) {
    const crops = JSON.stringify(planBatch(0, 0, r, ims.map((im) => [im.height, im.width] as [number, number]), mc));
    const t = performance.now();
    native().multicropImages(new Uint8Array(planes), sizes, crops, G, L, device);
    augTimes.push(performance.now() - t);
  }
  const augMs = median(augTimes.slice(2));
  const flops = 3 * (2 * forwardFlops(G) + nLocal * forwardFlops(L)) + 2 * forwardFlops(G); // student fwd+bwd ≈ 3×fwd, teacher fwd on 2 globals
  return {
    config,
    model_step_ms: modelMs,
    iteration_ms: iterMs,
    images_per_s: (B / iterMs) * 1000,
    backbone_tflops_per_s: (flops * B) / (modelMs / 1000) / 1e12,
    stages_ms: {
      augment: stage('ms_augment'),
      teacher_forward: stage('ms_teacher'),
      student_forward_and_losses: stage('ms_student'),
      backward: stage('ms_backward'),
      clip_and_optimizer: stage('ms_optimizer'),
      ema: stage('ms_ema'),
      data_wait: stage('ms_data_wait'),
    },
    augmentation_only: { affine, equalize, ms_per_batch: augMs, crop_sets_per_s: (ims.length / augMs) * 1000 },
  };
}

/** One run of the official DINOv2 step timer (time_train_step.py --json): its output; throws with the command and its stderr. */
async function officialRun(py: string, timers: string, steps: number, warm: number, threads: number, tmp: string) {
  const out = path.join(tmp, `official-${Date.now()}.json`);
  const precision = process.env.BENCH_PRECISION ?? 'fp32';
  const args = [path.join(timers, 'time_train_step.py'), '--steps', String(steps), '--warmup', String(warm), '--threads', String(threads), '--precision', precision, '--json', out];
  const r = spawnSync(py, args, { cwd: timers, env: process.env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status}: ${(r.stderr || r.stdout || '').trim().slice(-2000)}`;
    throw new Error(`the official timer failed (REF_PY=${py}, ${args[0]}): ${why}`);
  }
  const j = JSON.parse(await readFile(out, 'utf8')) as { summary: { median_s: number; forward_backward_s: number; clip_adamw_s: number; ema_s: number; images_per_s: number }; batch_build_s?: number };
  return j;
}

function line(r: Row, z: Sizes, threads: number, nMeasured: number): string {
  const s = r.stages_ms;
  const label = r.config === 'reference' ? 'reference configuration (side-by-side, DINOv2 optimizer values)' : 'CXformer defaults (configs/pretrain/default.yaml)';
  return [
    `train step, ${label}: ${process.env.BENCH_DEVICE ?? 'cpu'}, ${process.env.BENCH_PRECISION ?? 'fp32'}, ${threads} threads, B=${z.B}, ${z.G}/${z.L} px, 2+${z.nLocal} crops, K=${z.K}`,
    `  model step ${r.model_step_ms.toFixed(0)} ms | iteration ${r.iteration_ms.toFixed(0)} ms = ${r.images_per_s.toFixed(2)} images/s (median of ${nMeasured} after 3 warm-up)`,
    `  stages (ms): augment ${s.augment?.toFixed(0)} | teacher fwd ${s.teacher_forward?.toFixed(0)} | student fwd + losses ${s.student_forward_and_losses?.toFixed(0)} | backward ${s.backward?.toFixed(0)} | clip + AdamW ${s.clip_and_optimizer?.toFixed(0)} | EMA ${s.ema?.toFixed(0)} | waiting for data ${s.data_wait?.toFixed(0)}`,
    `  augmentation alone (affine ${r.augmentation_only.affine}, equalize ${r.augmentation_only.equalize}): ${r.augmentation_only.crop_sets_per_s.toFixed(1)} crop sets/s (${r.augmentation_only.ms_per_batch.toFixed(1)} ms per batch of ${z.B})`,
    `  backbone model FLOP rate: ${r.backbone_tflops_per_s.toFixed(3)} TFLOP/s (heads excluded)`,
  ].join('\n');
}

async function main() {
  const real = process.env.BENCH_REAL === '1';
  const steps = Number(process.env.BENCH_STEPS ?? 13);
  const z: Sizes = real ? { B: 64, G: 518, L: 98, nLocal: 8, K: 16384, real } : { B: 8, G: 98, L: 42, nLocal: 4, K: 4096, real };
  const threads = threadCount() || os.cpus().length;
  const machine = machineLine();
  process.stdout.write(`machine: ${machine}; node ${process.version}\n`);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'cxf-bench-train-'));
  try {
    const data = path.join(tmp, 'data');
    await synthDataset({ out: data, n: Math.max(2 * z.B, 32), seed: 1, size: 512 });
    const rows: Row[] = [];
    for (const config of real ? (['cxformer'] as const) : (['reference', 'cxformer'] as const)) {
      const r = await runRow(config, z, data, tmp, steps);
      rows.push(r);
      process.stdout.write(`${line(r, z, threads, steps - 3)}\n`);
    }

    // Side by side with the official code: alternate official and reference-configuration runs, medians, ratio.
    let sideBySide: Record<string, unknown> | null = null;
    const py = process.env.REF_PY;
    const src = process.env.DINOV2_SRC;
    if (py && src && !real) {
      const timers = process.env.REF_TIMERS ?? path.dirname(path.resolve(src));
      const runs = Number(process.env.BENCH_SBS_RUNS ?? 3);
      const off: Array<Awaited<ReturnType<typeof officialRun>>> = [];
      const ours: Row[] = [];
      for (let i = 0; i < runs; i++) {
        off.push(await officialRun(py, timers, steps, 3, threads, tmp));
        ours.push(await runRow('reference', z, data, tmp, steps));
        process.stdout.write(`  side by side ${i + 1}/${runs}: official ${(off[i]!.summary.median_s * 1000).toFixed(0)} ms/step, cxformer ${ours[i]!.model_step_ms.toFixed(0)} ms/step\n`);
      }
      const offStep = median(off.map((o) => o.summary.median_s * 1000));
      const offFb = median(off.map((o) => o.summary.forward_backward_s * 1000));
      const offOpt = median(off.map((o) => o.summary.clip_adamw_s * 1000));
      const offBuild = median(off.map((o) => ((o.batch_build_s ?? NaN) / steps) * 1000));
      const ourStep = median(ours.map((r) => r.model_step_ms));
      const ourFb = median(ours.map((r) => r.stages_ms.teacher_forward! + r.stages_ms.student_forward_and_losses! + r.stages_ms.backward!));
      const ourOpt = median(ours.map((r) => r.stages_ms.clip_and_optimizer!));
      const ourIter = median(ours.map((r) => r.iteration_ms));
      sideBySide = {
        runs,
        official_timer: path.join(timers, 'time_train_step.py'),
        official_ms: { model_step: offStep, forward_backward: offFb, clip_adamw: offOpt, batch_build_per_step: offBuild },
        cxformer_ms: { model_step: ourStep, forward_backward: ourFb, clip_adamw: ourOpt, iteration_with_data: ourIter },
        ratio_time_cxformer_over_official: { model_step: ourStep / offStep, forward_backward: ourFb / offFb, clip_adamw: ourOpt / offOpt },
        // Both pipelines in sequence in one process: the official step plus building its batch (PIL decode,
        // DataAugmentationDINO, collate); ours: decode + augmentation + step of the reference row (no prefetch).
        end_to_end_images_per_s: { official_sequential: (z.B / (offStep + offBuild)) * 1000, cxformer_sequential: (z.B / ourIter) * 1000 },
      };
      process.stdout.write(
        `side by side (${runs} alternating runs, medians): model step official ${offStep.toFixed(0)} ms, cxformer ${ourStep.toFixed(0)} ms ` +
          `→ cxformer time ÷ official time ${(ourStep / offStep).toFixed(2)} (forward+backward ${(ourFb / offFb).toFixed(2)}, clip+AdamW ${(ourOpt / offOpt).toFixed(2)})\n`,
      );
    } else if (!real) {
      process.stdout.write('side by side with the official DINOv2 step: set REF_PY and DINOV2_SRC (see BENCHMARKS.md)\n');
    }

    const result = { machine, threads, device: process.env.BENCH_DEVICE ?? 'cpu', precision: process.env.BENCH_PRECISION ?? 'fp32', sizes: z, steps: { warmup: 3, measured: steps - 3 }, rows, side_by_side: sideBySide };
    await mkdir('bench-results', { recursive: true });
    await writeFile('bench-results/train.json', `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench:train: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
