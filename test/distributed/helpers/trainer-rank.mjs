// One rank of the Trainer-API equivalence check (test/distributed/train-dist.test.ts), run through `cxformer launch --exec`
// (or alone: one process). Every rank builds the SAME full batch of TOTAL images per step (seeded), keeps its
// contiguous share (rank r: images r·b … r·b + b − 1 of every crop), steps, and writes its losses and its final
// state. With 2 ranks × b = 1 rank × 2b, the states must agree within floating-point tolerance.
// argv: <out dir> <centering> <steps> <total images per step> <repo root>
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [out, centering, stepsArg, totalArg, root] = process.argv.slice(2);
const dist = (p) => import(pathToFileURL(path.join(root, 'dist', p)).href);
const { Trainer } = await dist('train/trainer.js');
const { joinProcessGroup } = await dist('distributed/group.js');
const { resolveDistEnv } = await dist('distributed/env.js');
const { mulberry32 } = await dist('data/phantom.js');

const env = resolveDistEnv();
const W = env.worldSize;
const TOTAL = Number(totalArg);
const b = TOTAL / W;
const G = 56;
const L = 28;
const NL = 2;
const N = (G / 14) ** 2;
const pg = await joinProcessGroup({ env, timeoutS: 60, device: 'cpu' });
const t = await Trainer.create({
  configs: ['demo'],
  processGroup: pg,
  overrides: [
    `output=${out}`,
    'model.depth=2',
    'model.drop_path_rate=0',
    `crops.global_crops_size=${G}`,
    `crops.local_crops_size=${L}`,
    `crops.local_crops_number=${NL}`,
    `train.batch_size_per_gpu=${b}`,
    `train.centering=${centering}`,
    'train.OFFICIAL_EPOCH_LENGTH=4',
    'optim.epochs=2',
    'optim.warmup_epochs=1',
    'dino.head_n_prototypes=256',
    'dino.koleo_loss_weight=0',
    'compute.device=cpu',
    'compute.threads=1',
    'compute.precision=fp32',
    'probe.enabled=false',
  ],
});

/** Rows crop·TOTAL + image of a full (crops·TOTAL, 3, S, S) batch, keeping this rank's images. */
function crops(step, kind, nCrops, S) {
  const per = 3 * S * S;
  const data = new Float32Array(nCrops * b * per);
  for (let c = 0; c < nCrops; c++) {
    for (let j = 0; j < b; j++) {
      const img = env.rank * b + j;
      const rnd = mulberry32(((step * 7919 + c * 131 + img * 17 + (kind === 'g' ? 0 : 100003)) >>> 0) + 1);
      const row = data.subarray((c * b + j) * per, (c * b + j + 1) * per);
      for (let k = 0; k < per; k++) row[k] = 2 * rnd() - 1;
    }
  }
  return { data, shape: [nCrops * b, 3, S, S] };
}

/** The same number of masked patches on every rank (iBOT's centre is a mean of per-rank means). */
function masks(step) {
  const m = new Uint8Array(2 * b * N);
  for (let c = 0; c < 2; c++) {
    for (let j = 0; j < b; j++) {
      const img = env.rank * b + j;
      // 3 or 5 patches by image parity: every rank of an even b masks the same total.
      const count = [3, 5][(img + c) % 2];
      for (let k = 0; k < count; k++) m[(c * b + j) * N + ((k * 5 + img + step) % N)] = 1;
    }
  }
  return m;
}

const steps = Number(stepsArg);
const losses = [];
for (let s = 0; s < steps; s++) {
  const rec = await t.step({ globals: crops(s, 'g', 2, G), locals: crops(s, 'l', NL, L), masks: masks(s) }, s);
  losses.push(rec);
}
await mkdir(out, { recursive: true });
await t.save(path.join(out, `rank-${env.rank}.safetensors`), steps - 1);
await writeFile(path.join(out, `losses-${env.rank}.json`), JSON.stringify(losses));
await pg?.barrier();
pg?.destroy();
