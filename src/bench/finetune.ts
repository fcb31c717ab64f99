/**
 * Linear-probe head training throughput (part of `npm run bench`): CXformer(S)'s head (5·384 = 1920 features →
 * 5 classes, batch 10, lr 5e-5, spec §5.1) on N random feature rows, a few epochs, median epoch time. Features
 * themselves cost one embedding forward per image (see the embedding benchmark). Writes bench-results/finetune.json.
 * Env: BENCH_ROWS (default 20000), BENCH_EPOCHS (default 3), CXFORMER_THREADS.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { threadCount } from '../backbone.js';
import { fitLinearProbe } from '../finetune/probe.js';
import { native } from '../native/load.js';

async function main() {
  const n = Number(process.env.BENCH_ROWS ?? 20000);
  const epochs = Number(process.env.BENCH_EPOCHS ?? 3);
  const F = 1920;
  const C = 5;
  native().setThreads(threadCount());
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
  const result = { machine: `${os.cpus()[0]?.model} (${os.cpus().length} logical CPUs)`, threads: threadCount() || os.cpus().length, rows: n, features: F, classes: C, batch: 10, epochs, s_per_epoch, rows_per_s: n / s_per_epoch, final_train_loss: fit.history.at(-1)?.trainLoss };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/finetune.json', `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`linear head (1920 → 5, batch 10): ${result.rows_per_s.toFixed(0)} rows/s, ${s_per_epoch.toFixed(2)} s per epoch of ${n} rows\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:finetune: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
