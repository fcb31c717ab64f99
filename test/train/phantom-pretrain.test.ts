/**
 * Phantom end to end (issue #5): pretrain briefly, export, linear-probe, evaluate — and the same probe on a randomly
 * initialised encoder of the same architecture, both recorded. Asserted: the pipeline runs and both probes read the
 * phantom findings well above chance (macro AUROC > 0.55). NOT asserted: that the pretrained encoder beats the random
 * one — with this recipe that depends on the seed and on the CPU (see the end of this note).
 *
 * Recipe (seeded, deterministic for a thread count; a few minutes on 2 CPU cores): the demo pretraining config
 * (4 blocks, 98/42 px crops, batch 8) on a narrower ViT (D 192, 3 heads) with 1024 prototypes, LayerScale
 * initialised at 1.0 instead of DINOv2's 1e-5 (from scratch, 1e-5 leaves the residual branches nearly silent for a
 * short run), lr 1e-3, 500 iterations, on 1000 phantom images (seed 3); then the phantom preset's linear probe (98
 * px, 4 CLS + patch mean, 30 epochs) on a disjoint phantom set of 1500 images (seed 11; 50 % train, 10 % valid, 40 %
 * test, so the test macro AUROC rests on 600 images). The random encoder has the same architecture and seed.
 * README.md and BENCHMARKS.md record both numbers: pretrained 0.6235, random 0.6050 (0.6052 with vit_small's 37x37
 * grid interpolated to 7x7; the random encoder now has the export's 98-px grid) since the patch embedding starts
 * from PyTorch's Conv2d default as in DINOv2 (issue #13; with tch's larger kaiming init the random encoder scored
 * 0.560 and the pretrained one 0.595). Over seeds (BENCHMARKS.md) the pretrained encoder scores 0.624 / 0.576 / 0.640
 * and the random one 0.585–0.605; on an AVX-512 host (2026-12-08) the same seed-0 run gave 0.597 against the random
 * encoder's identical 0.605 (the pretraining's float rounding differs by CPU and 500 collapsed-teacher iterations
 * amplify it), so the comparison this test used to assert (pretrained > random + 0.01) was a property of one seed on
 * one kind of CPU. The reliable paired check is the demo's (its last linear probe against its own untrained encoder,
 * +0.012 to +0.030 over three seeds): test/cli/readme-examples.ts, whose suite this file also runs (below).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { describeReadmeExamples } from '../cli/readme-examples.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;

/** The architecture overrides of the comparison, shared by the pretraining run and the random encoder. */
const ARCH = ['model.depth=4', 'model.embed_dim=192', 'model.num_heads=3', 'model.layerscale_init=1.0'];
const PRETRAIN = [
  '--config', 'demo', ...ARCH, 'data.base_size=128', 'dino.head_n_prototypes=1024', 'optim.base_lr=0.001', 'train.OFFICIAL_EPOCH_LENGTH=10',
  'optim.epochs=50', 'optim.warmup_epochs=5', 'checkpoint.period_iterations=100', 'probe.enabled=false', 'compute.threads=2', '-q',
];

/** Both encoders' probes must read the findings above chance by this much (test macro AUROC; see the note above). */
const ABOVE_CHANCE = 0.55;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function macroAuroc(out: string): Promise<{ macro: number; perClass: Record<string, number> }> {
  const m = JSON.parse(await readFile(path.join(out, 'eval', 'metrics.json'), 'utf8'));
  return { macro: m.macro.auroc.value, perClass: Object.fromEntries(m.per_class.map((c: { class: string; auroc: { value: number } }) => [c.class, c.auroc.value])) };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-phantom-'));
  await synthDataset({ out: path.join(tmp, 'pretrain-data'), n: 1000, seed: 3, size: 128 });
  await synthDataset({ out: path.join(tmp, 'probe-data'), n: 1500, seed: 11, size: 128, splitFractions: { train: 0.5, valid: 0.1, test: 0.4 } });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('phantom: pretrained encoder vs random initialisation', () => {
  it('pretrains, exports and probes end to end; the probes of the pretrained and the random encoder both read the findings', async () => {
    const run = path.join(tmp, 'run');
    const t = cli(['train', ...PRETRAIN, `output=${run}`, `data.root=${path.join(tmp, 'pretrain-data')}`]);
    expect(t.code, t.stderr).toBe(0);
    const probe = (name: string, encoder: string[]) => {
      const out = path.join(tmp, name);
      const r = cli(['finetune', '--config', 'phantom', ...encoder, '--root', path.join(tmp, 'probe-data'), '--out', out, '--bootstrap', '0', '--threads', '2', '-q']);
      expect(r.code, r.stderr).toBe(0);
      return macroAuroc(out);
    };
    const pretrained = await probe('probe-pretrained', ['--weights', path.join(run, 'exported')]);
    // Same geometry as the pretrained export (its position grid is the 98-px global crop's 7x7, not vit_small's 37x37).
    const random = await probe('probe-random', ['--arch', 'vit_small', ...ARCH, 'model.img_size=98']);
    process.stdout.write(`phantom linear probe, test macro AUROC: pretrained ${pretrained.macro.toFixed(4)} ${JSON.stringify(pretrained.perClass)}; random init ${random.macro.toFixed(4)} ${JSON.stringify(random.perClass)}\n`);
    expect(pretrained.macro).toBeGreaterThan(ABOVE_CHANCE);
    expect(random.macro).toBeGreaterThan(ABOVE_CHANCE);
    // The pretrained encoder is a trained one, not the random initialisation: its probe differs.
    expect(pretrained.macro).not.toBe(random.macro);
    // Minutes alone on 2 cores; the other vitest worker's trainings (captioner, fine-tuning) can more than double it.
  }, 1_800_000);
});

// The README's examples (they train the demo, ~3 min alone). In this file so that the suite's two long trainings run
// one after the other: vitest runs files in parallel (2 workers on 2 cores), and side by side each took ~4x longer
// (oversubscribed LibTorch threads), past this test's limit.
describeReadmeExamples();
