/**
 * `node dist/bench/dist.js` (part of `npm run bench`): data-parallel step time, 1 rank vs 2 ranks on this machine,
 * through the real `cxformer launch -- train` path (Gloo over 127.0.0.1 on CPU, NCCL with BENCH_DEVICE=cuda).
 * Same per-rank batch in both runs (weak scaling: 2 ranks process twice the images per step). Configuration: the
 * CPU train benchmark's (ViT-S/14 + 4 registers, 98/42 px, 2+4 crops, batch 8 per rank, K=4096, fp32).
 * Each run: BENCH_STEPS (default 13) iterations; the median step time of the iterations after 3 warm-up ones, from
 * metrics.jsonl (`it_per_s` per iteration, rank 0). The CPU cores are split between the ranks (1 rank: all
 * cores; N ranks: cores / N threads each, as `cxformer launch` does). Writes bench-results/dist.json.
 *
 * Env: BENCH_REAL=1 (CXformer's sizes as in train.js: 518/98 px, 8 locals, batch 64, K=16384, separate iBOT head,
 * bf16; GPU), BENCH_DEVICE (cpu | cuda), BENCH_NPROC (ranks of the second run, default 2), BENCH_STEPS, BENCH_REPEATS
 * (alternating runs of each setup, default 2; medians reported).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthDataset } from '../data/synth.js';
import { median } from './flops.js';

const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

async function runRanks(nproc: number, out: string, overrides: string[], threads: number): Promise<{ stepMs: number; imagesPerS: number; wallS: number }> {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [MAIN, 'launch', '--nproc-per-node', String(nproc), '--', 'train', ...overrides, `output=${out}`, `compute.threads=${threads}`, '-q'], {
    encoding: 'utf8',
    env: { ...process.env, CXFORMER_THREADS: String(threads) },
  });
  const wallS = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${nproc}-rank run failed (exit ${r.status}):\n${r.stderr}`);
  const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { iteration: number; it_per_s?: number; images_per_s?: number });
  const steps = lines.filter((l) => l.it_per_s !== undefined && l.iteration >= 3);
  const stepMs = median(steps.map((l) => 1000 / (l.it_per_s as number)));
  const imagesPerS = median(steps.map((l) => l.images_per_s as number));
  return { stepMs, imagesPerS, wallS };
}

async function main() {
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const nproc = Number(process.env.BENCH_NPROC ?? 2);
  const steps = Number(process.env.BENCH_STEPS ?? 13);
  const repeats = Number(process.env.BENCH_REPEATS ?? 2);
  const cores = os.availableParallelism();
  const real = process.env.BENCH_REAL === '1';
  const B = real ? 64 : 8;
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'cxf-bench-dist-'));
  const data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: Math.max(2 * B * nproc, 32), seed: 1, size: 512 });
  const overrides = [
    `data.root=${data}`,
    `compute.device=${device}`,
    `compute.precision=${real ? 'bf16' : 'fp32'}`,
    `train.batch_size_per_gpu=${B}`,
    `train.OFFICIAL_EPOCH_LENGTH=${steps}`,
    'optim.epochs=1',
    'optim.warmup_epochs=0',
    `crops.global_crops_size=${real ? 518 : 98}`,
    `crops.local_crops_size=${real ? 98 : 42}`,
    `crops.local_crops_number=${real ? 8 : 4}`,
    `dino.head_n_prototypes=${real ? 16384 : 4096}`,
    `dino.head_bottleneck_dim=${real ? 384 : 256}`,
    `ibot.separate_head=${real}`,
    `ibot.head_n_prototypes=${real ? 16384 : 4096}`,
    'checkpoint.period_iterations=100000',
    'checkpoint.keep_last=1',
    'log.period_iterations=1',
    'probe.enabled=false',
  ];
  // Alternate the two setups (1, N, 1, N, …) so that load from other work on the machine hits both alike.
  const ones: Array<{ stepMs: number; imagesPerS: number; wallS: number }> = [];
  const manys: typeof ones = [];
  for (let k = 0; k < repeats; k++) {
    ones.push(await runRanks(1, path.join(tmp, `one-${k}`), overrides, cores));
    manys.push(await runRanks(nproc, path.join(tmp, `many-${k}`), overrides, Math.max(1, Math.floor(cores / nproc))));
  }
  const summary = (runs: typeof ones) => ({
    stepMs: median(runs.map((r) => r.stepMs)),
    imagesPerS: median(runs.map((r) => r.imagesPerS)),
    wallS: median(runs.map((r) => r.wallS)),
    runs: runs.map((r) => ({ stepMs: Math.round(r.stepMs), imagesPerS: Number(r.imagesPerS.toFixed(2)) })),
  });
  const one = summary(ones);
  const many = summary(manys);
  const result = {
    machine: `${os.cpus()[0]?.model ?? 'cpu'} (${cores} logical CPUs)`,
    device,
    load_avg_1min_at_end: 0,
    repeats,
    config: real
      ? { batch_per_rank: B, global: 518, local: 98, n_local: 8, K: 16384, separate_ibot_head: true, backbone: 'vit_small p14 reg4 (12 blocks)', precision: 'bf16' }
      : { batch_per_rank: B, global: 98, local: 42, n_local: 4, K: 4096, separate_ibot_head: false, backbone: 'vit_small p14 reg4 (12 blocks)', precision: 'fp32' },
    steps: { total: steps, warmup: 3 },
    one_rank: { ranks: 1, threads_per_rank: cores, global_batch: B, ...one },
    ranks: { ranks: nproc, threads_per_rank: Math.max(1, Math.floor(cores / nproc)), global_batch: B * nproc, ...many },
    step_time_ratio: many.stepMs / one.stepMs,
    throughput_ratio: many.imagesPerS / one.imagesPerS,
  };
  result.load_avg_1min_at_end = Number(os.loadavg()[0]?.toFixed(2));
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/dist.json', `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    [
      `data-parallel step (${device}, ${real ? 'bf16, real CXformer sizes' : 'fp32'}, batch ${B} per rank, ${cores} cores):`,
      `  1 rank  × ${cores} threads: ${one.stepMs.toFixed(0)} ms/step, ${one.imagesPerS.toFixed(2)} images/s (global batch ${B})`,
      `  ${nproc} ranks × ${result.ranks.threads_per_rank} thread(s): ${many.stepMs.toFixed(0)} ms/step, ${many.imagesPerS.toFixed(2)} images/s (global batch ${B * nproc})`,
      `  step time ×${result.step_time_ratio.toFixed(2)}, throughput ×${result.throughput_ratio.toFixed(2)} (medians of ${repeats} alternating runs; per run: 1 rank ${one.runs.map((r) => r.stepMs).join(' / ')} ms, ${nproc} ranks ${many.runs.map((r) => r.stepMs).join(' / ')} ms; load average ${result.load_avg_1min_at_end})`,
      '',
    ].join('\n'),
  );
  await rm(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`bench:dist: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
