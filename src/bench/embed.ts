/**
 * `npm run bench`: embedding throughput of ViT-S/14 with 4 registers through the whole TypeScript → N-API →
 * Rust → LibTorch path (batch 8; 224 and 518 px; f32 and bf16 autocast), plus the per-call cost of the
 * N-API boundary. Prints a Markdown table and writes bench-results/embed.json. Medians of several runs after
 * a warm-up; not a test.
 *
 * Env: CXFORMER_THREADS (default all cores), BENCH_DEVICE (cpu | cuda), BENCH_RUNS (default 5 at 224, 3 at 518),
 * BENCH_SIZES (default "224,518"), BENCH_PRECISIONS (default "f32,bf16"), BENCH_BATCH (default 8),
 * BENCH_PEAK_TFLOPS (peak of the device for the precision, to print MFU).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { loadBackbone, threadCount } from '../backbone.js';
import { native } from '../native/load.js';
import { forwardFlops, median } from './flops.js';



async function main() {
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const sizes = (process.env.BENCH_SIZES ?? '224,518').split(',').map(Number);
  const precisions = (process.env.BENCH_PRECISIONS ?? 'f32,bf16').split(',') as Array<'f32' | 'bf16'>;
  const batch = Number(process.env.BENCH_BATCH ?? 8);
  const model = await loadBackbone({ arch: 'vit_small', device, threads: threadCount() });
  const bind = native();
  const rt = JSON.parse(bind.runtimeInfo()) as Record<string, unknown>;
  delete rt.report;
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} logical CPUs), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`;
  const rows: Array<Record<string, unknown>> = [];
  for (const size of sizes) {
    for (const precision of precisions) {
      const x = new Float32Array(batch * 3 * size * size);
      for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 1.5;
      await model.embed(x, [batch, 3, size, size], { precision }); // warm-up (allocations, oneDNN primitives)
      const runs = Number(process.env.BENCH_RUNS ?? (size > 300 ? 3 : 5));
      const times: number[] = [];
      for (let r = 0; r < runs; r++) {
        const t = performance.now();
        await model.embed(x, [batch, 3, size, size], { precision });
        times.push((performance.now() - t) / 1000);
      }
      const s = median(times);
      const tokens = 1 + 4 + (size / 14) ** 2;
      const tflops = (forwardFlops(size) * batch) / s / 1e12;
      const peak = Number(process.env.BENCH_PEAK_TFLOPS ?? NaN);
      rows.push({ size, precision, batch, runs, median_s: s, images_per_s: batch / s, tokens, tflops, mfu: Number.isFinite(peak) ? tflops / peak : null });
      process.stderr.write(`  ${size}px ${precision}: ${(batch / s).toFixed(2)} img/s (median of ${runs}: ${s.toFixed(3)} s per batch)\n`);
    }
  }
  // N-API per-call overhead: a 1x1 matmul (synchronous call, negligible compute) and a tiny async embed.
  const one = new Float32Array([1]);
  const n = 20000;
  for (let i = 0; i < 1000; i++) bind.matmul(one, [1, 1], one, [1, 1]);
  let t = performance.now();
  for (let i = 0; i < n; i++) bind.matmul(one, [1, 1], one, [1, 1]);
  const syncUs = ((performance.now() - t) / n) * 1000;
  const tiny = await loadBackbone({ arch: 'vit_small', overrides: ['model.depth=1', 'model.embed_dim=64', 'model.num_heads=1', 'model.img_size=14'], threads: threadCount() });
  const px = new Float32Array(3 * 14 * 14);
  const asyncTimes: number[] = [];
  for (let r = 0; r < 7; r++) {
    const m = 200;
    t = performance.now();
    for (let i = 0; i < m; i++) await tiny.embed(px, [1, 3, 14, 14]);
    asyncTimes.push(((performance.now() - t) / m) * 1000);
  }
  const result = {
    machine,
    node: process.version,
    runtime: rt,
    device,
    model: 'vit_small p14, 4 registers (22.06 M params), random init',
    rows,
    napi: { sync_call_us: syncUs, async_tiny_embed_us: median(asyncTimes) },
    date: new Date().toISOString(),
  };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/embed.json', `${JSON.stringify(result, null, 2)}\n`);
  const lines = [
    `machine: ${machine}; node ${process.version}; torch ${rt.torch_version}; threads ${rt.threads}; BLAS ${rt.blas}; device ${device}`,
    '',
    '| input | precision | batch | images/s | s / batch (median) | runs | model TFLOP/s | MFU |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.size}×${r.size} (${r.tokens} tokens) | ${r.precision} | ${r.batch} | ${(r.images_per_s as number).toFixed(2)} | ${(r.median_s as number).toFixed(3)} | ${r.runs} | ${(r.tflops as number).toFixed(3)} | ${r.mfu === null ? '–' : `${((r.mfu as number) * 100).toFixed(1)} %`} |`,
    ),
    '',
    `N-API boundary: synchronous call (1×1 matmul, copy in/out) ${syncUs.toFixed(2)} µs; async embed round trip of a 1-token-patch model ${median(asyncTimes).toFixed(1)} µs (libuv pool hop + promise).`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
