// One rank of a data-parallel full fine-tuning through the library (test/distributed/finetune-dist.test.ts): runs
// fullFinetune on the phantom folder, stopping after <stop> steps in total when given (mid-epoch interruption), and
// writes its result (rank, interrupted, history length) to <results>/result-<rank>.json (outside the run folder, which
// rank 0 alone writes). argv: <repo root> <data root> <out> <results dir> [stop after steps]
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [root, data, out, results, stop] = process.argv.slice(2);
const { fullFinetune } = await import(pathToFileURL(path.join(root, 'dist', 'finetune', 'full.js')).href);
const classes = ['Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'];
const res = await fullFinetune({
  backbone: { arch: 'vit_small', overrides: ['model.depth=2', 'model.img_size=56', 'model.drop_path_rate=0'], threads: 1 },
  dataset: { name: 'csv', root: data, manifest: 'odd.csv', pathColumn: 'Path', patientColumn: 'Patient', splitColumn: 'Split', labelColumns: classes },
  classes,
  features: { clsLayers: 2 },
  preprocess: { resize: 56, crop: 56 },
  train: { epochs: 2, batchSize: 3, headLr: 1e-3, backboneLr: 1e-4, warmupEpochs: 1, schedule: 'cosine', selectBest: 'valLoss' },
  out,
  bootstrap: 0,
  dist: { timeoutS: 60 },
  ...(stop ? { stopAfterSteps: Number(stop) } : {}),
});
await mkdir(results, { recursive: true });
await writeFile(path.join(results, `result-${res.rank}.json`), JSON.stringify({ rank: res.rank, worldSize: res.worldSize, interrupted: res.interrupted, epochs: res.history.length }));
