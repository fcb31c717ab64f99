// One rank of a data-parallel segmentation training through the library (test/distributed/seg-dist.test.ts): runs
// trainSegmentation on the phantom folder, stopping after <stop> steps in total when given (mid-epoch interruption),
// and writes its result (rank, interrupted, partial, history length, whether it evaluated) to
// <results>/result-<rank>.json (outside the run folder, which rank 0 alone writes).
// argv: <repo root> <data root> <golden weights> <out> <results dir> [stop after steps]
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [root, data, weights, out, results, stop] = process.argv.slice(2);
const { trainSegmentation } = await import(pathToFileURL(path.join(root, 'dist', 'segment', 'train.js')).href);
const res = await trainSegmentation({
  backbone: { weights, threads: 1 },
  dataset: { name: 'csv', root: data, manifest: 'odd.csv', pathColumn: 'Path', patientColumn: 'Patient', splitColumn: 'Split' },
  masks: { source: 'csv', root: data },
  preprocess: { resize: 56, crop: 56 },
  seg: { head: 'linear', lr: 0.02 },
  epochs: 2,
  batchSize: 3,
  warmupEpochs: 1,
  out,
  bootstrap: 0,
  overlays: 0,
  dist: { timeoutS: 60 },
  ...(stop ? { stopAfterSteps: Number(stop) } : {}),
});
await mkdir(results, { recursive: true });
await writeFile(
  path.join(results, `result-${res.rank}.json`),
  JSON.stringify({ rank: res.rank, worldSize: res.worldSize, interrupted: res.interrupted, partial: res.partial, epochs: res.history.length, evaluated: res.evaluation !== null }),
);
