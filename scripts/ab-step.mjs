// A/B of the training step of two builds of cxformer in ONE process, steps alternated one by one, so that both see
// the same machine state (shared vCPUs drift by ±25 % between separate runs, far more than a refactor's effect).
//
//   git worktree add /tmp/base <commit>; (cd /tmp/base && ln -s $PWD/../main/node_modules . && bash scripts/setup.sh)
//   node scripts/ab-step.mjs /tmp/base . ssl        # or: finetune
//
// Caveat: an addon from before d76f9b4/8311acd runs its LibTorch work on libuv's threads; loaded next to a newer one it
// adds OpenMP teams, so libgomp throttles the spin-waits of both (crates/node/src/compute.rs) and both slow down.
// Compare such trees in separate processes (e.g. the native `--bench step` binaries alternated).
// Each tree must be built (dist/ and its own addon). Prints the median step time of each and the median of the
// per-pair ratios B/A. ssl: the `npm run bench` CPU pretraining configuration on explicit crops (batch 8, 98/42 px,
// 4 locals, K = 4096; AB_OVERRIDES adds overrides); finetune: ViT-S/14 at 224 px, batch 10, 5 classes, on pixels. AB_STEPS pairs (12) after 2.
import os from 'node:os';
import path from 'node:path';

const [a, b, kind = 'ssl'] = process.argv.slice(2);
if (!a || !b || !['ssl', 'finetune'].includes(kind)) {
  console.error('usage: node scripts/ab-step.mjs <tree A> <tree B> [ssl|finetune]');
  process.exit(2);
}
const trees = { A: path.resolve(a), B: path.resolve(b) };
const steps = Number(process.env.AB_STEPS ?? 12);
// AB_OVERRIDES: extra config overrides (space-separated key=value) for both trees, e.g. the side-by-side reference
// configuration of BENCHMARKS.md.
// AB_REFERENCE=1: the side-by-side reference configuration (tree B's dist/bench/reference-config.js) for both.
const extra = (process.env.AB_OVERRIDES ?? '').split(/\s+/).filter(Boolean);
if (process.env.AB_REFERENCE === '1') {
  const { referenceConfiguration } = await import(`${path.resolve(b)}/dist/bench/reference-config.js`);
  extra.push(...referenceConfiguration(8));
}

/** A function running one step of the given tree. */
async function stepper(root) {
  const { native } = await import(`${root}/dist/native/load.js`);
  native().setThreads(2);
  if (kind === 'ssl') {
    const { Trainer } = await import(`${root}/dist/train/trainer.js`);
    const [Bt, G, L, nLocal, K] = [8, 98, 42, 4, 4096];
    const trainer = await Trainer.create({
      overrides: ['compute.device=cpu', 'compute.precision=fp32', `output=${os.tmpdir()}/cxf-ab`, 'compute.threads=2', `train.batch_size_per_gpu=${Bt}`,
        `crops.global_crops_size=${G}`, `crops.local_crops_size=${L}`, `crops.local_crops_number=${nLocal}`, `dino.head_n_prototypes=${K}`,
        'ibot.separate_head=false', `ibot.head_n_prototypes=${K}`, ...extra],
    });
    const rnd = (n, seed) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 1.5);
    const grid = G / 14;
    const batch = {
      globals: { data: rnd(2 * Bt * 3 * G * G, 1), shape: [2 * Bt, 3, G, G] },
      locals: { data: rnd(nLocal * Bt * 3 * L * L, 2), shape: [nLocal * Bt, 3, L, L] },
      masks: Uint8Array.from({ length: 2 * Bt * grid * grid }, (_, i) => (i % 3 === 0 ? 1 : 0)),
    };
    return (i) => trainer.step(batch, i);
  }
  const { presetConfig } = await import(`${root}/dist/model/config.js`);
  const [size, Bt, C] = [224, 10, 5];
  const ft = await native().createFinetuner(
    JSON.stringify({ config: { model: presetConfig('vit_small'), numClasses: C, headLr: 5e-5, backboneLr: 5e-7, stepsPerEpoch: 1000, precision: 'f32' }, device: 'cpu' }),
  );
  const x = new Float32Array(Bt * 3 * size * size).map((_, i) => Math.sin(i * 0.37) * 1.5);
  const y = new Float32Array(Bt * C).map((_, i) => (i % 3 === 0 ? 1 : 0));
  const m = new Uint8Array(Bt * C).fill(1);
  return () => ft.stepPixels(x, [Bt, 3, size, size], y, [Bt, C], m);
}

const run = { A: await stepper(trees.A), B: await stepper(trees.B) };
const times = { A: [], B: [] };
for (let i = 0; i < steps + 2; i++) {
  // Alternate which build goes first, so neither always follows the other.
  for (const k of i % 2 ? ['A', 'B'] : ['B', 'A']) {
    const t = performance.now();
    await run[k](i);
    if (i >= 2) times[k].push(performance.now() - t);
  }
}
const median = (v) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
console.log(
  JSON.stringify({
    kind,
    cpu: os.cpus()[0]?.model,
    A: trees.A,
    B: trees.B,
    A_ms: median(times.A),
    B_ms: median(times.B),
    median_pair_ratio_B_over_A: median(times.B.map((t, i) => t / times.A[i])),
    pairs: steps,
  }),
);
