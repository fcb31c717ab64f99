/**
 * Pretraining end to end on phantom data: CLI run (losses finite and falling, checkpoints, export → embed),
 * exact resume after an interruption, refusal of another run's folder, unreadable/empty data, NaN stop, and
 * the Trainer library API. A tiny configuration keeps each run to a few seconds on 2 cores.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { train } from '../../src/train/run.js';
import { Trainer } from '../../src/train/trainer.js';
import { repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;

/** Tiny run: ViT-S width with 2 blocks, 56/28 px crops, batch 4, 12 iterations, checkpoints every 4. */
const tiny = (out: string, extra: string[] = []) => [
  `output=${out}`,
  `data.root=${data}`,
  'data.base_size=96',
  'model.depth=2',
  'crops.global_crops_size=56',
  'crops.local_crops_size=28',
  'crops.local_crops_number=2',
  'train.batch_size_per_gpu=4',
  'train.OFFICIAL_EPOCH_LENGTH=6',
  'optim.epochs=2',
  'optim.warmup_epochs=1',
  'dino.head_n_prototypes=256',
  'checkpoint.period_iterations=4',
  'compute.threads=1',
  'probe.enabled=false',
  // The mechanics tested here were sized with CXformer's lr and LayerScale init, not the demo's 1e-3 / 1.0.
  'optim.base_lr=0.0003',
  'model.layerscale_init=1e-5',
  ...extra,
];

function cli(args: string[]) {
  // stderr is a pipe: the plain progress lines (CXFORMER_PROGRESS_TTY, which launch sets, would ask for a terminal's).
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_PROGRESS_TTY: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function tensors(file: string) {
  return (await readSafetensors(file)).tensors;
}


beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-train-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 16, seed: 3, size: 128 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer train', () => {
  it('trains (progress lines), checkpoints, exports, and the export embeds', async () => {
    const out = path.join(tmp, 'run-a');
    const r = cli(['train', '--config', 'demo', ...tiny(out)]);
    expect(r.code, r.stderr).toBe(0);
    // Progress without a terminal (the shared progress line of every long command): plain lines with the losses,
    // throughput, iteration count, percentage and ETA, at least the first and the last iteration's; the checkpoints.
    expect(r.stderr).not.toContain('\r');
    const err = r.stderr.trimEnd().split('\n');
    expect(err).toContain('train: iterations 0..11');
    const steps = err.map((l) => /^train: loss \d+\.\d{4} \(dino \S+, ibot \S+, koleo \S+, H\/lnK \S+\), lr \S+, \S+ it\/s, \S+ img\/s, iteration (\d+)\/12 \((\d+) %\), \S+ elapsed, ETA \S+$/.exec(l)).filter((m) => m !== null);
    expect(steps.length, r.stderr).toBeGreaterThanOrEqual(2);
    expect(steps[0]![1]).toBe('1');
    expect([steps.at(-1)![1], steps.at(-1)![2]]).toEqual(['12', '100']);
    expect(err.filter((l) => l.startsWith('checkpoint: ')).map((l) => path.basename(l))).toEqual(['ckpt-0000003.safetensors', 'ckpt-0000007.safetensors', 'ckpt-0000011.safetensors']);
    expect(err.at(-1)).toBe(`train: done (${out}); exported teacher: ${path.join(out, 'exported')}`);
    const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.iteration)).toEqual([...Array(12).keys()]);
    for (const l of lines) {
      for (const k of ['total_loss', 'dino_local_crops_loss', 'dino_global_crops_loss', 'ibot_loss', 'koleo_loss', 'grad_norm_backbone']) {
        expect(Number.isFinite(l[k]), `${k} at ${l.iteration}`).toBe(true);
      }
      expect(l.lr).toBeGreaterThanOrEqual(0);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(lines.slice(-3).map((l) => l.total_loss))).toBeLessThan(mean(lines.slice(0, 3).map((l) => l.total_loss)));
    // Warm-up: lr 0 at iteration 0, rising to base_lr at the end of epoch 1; last layer frozen during epoch 1.
    expect(lines[0].lr).toBe(0);
    expect(lines[5].lastLayerLr).toBe(0);
    expect(lines[6].lastLayerLr).toBeGreaterThan(0);
    expect((await readdir(path.join(out, 'checkpoints'))).sort()).toEqual(['ckpt-0000007.safetensors', 'ckpt-0000011.safetensors']);
    for (const f of ['config.json', 'model.safetensors', 'preprocessor_config.json', 'dino_head.safetensors']) {
      expect(existsSync(path.join(out, 'exported', f)), f).toBe(true);
    }
    const heads = await tensors(path.join(out, 'exported', 'dino_head.safetensors'));
    expect(heads.get('dino_head.last_layer.weight_v')?.shape).toEqual([256, 384]);
    const cfg = JSON.parse(await readFile(path.join(out, 'exported', 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe('dinov2_with_registers');
    expect(cfg.num_hidden_layers).toBe(2);
    const emb = path.join(tmp, 'emb.safetensors');
    const images = (await readdir(path.join(data, 'images'))).slice(0, 2).map((f) => path.join(data, 'images', f));
    const e = cli(['embed', '--weights', path.join(out, 'exported'), ...images, '--out', emb, '-q']);
    expect(e.code, e.stderr).toBe(0);
    expect((await tensors(emb)).get('patches')?.shape).toEqual([2, 16, 192]); // the demo's width
    // The checkpoint itself also embeds (teacher backbone).
    const e2 = cli(['embed', '--weights', path.join(out, 'checkpoints', 'ckpt-0000011.safetensors'), ...images, '--out', emb, '-q']);
    expect(e2.code, e2.stderr).toBe(0);

    // ---- resume after an interruption gives the same final weights ----
    const outB = path.join(tmp, 'run-b');
    const first = await train({ configs: ['demo'], overrides: tiny(outB), stopAfter: 6 });
    expect(first.lastIteration).toBe(5);
    expect(first.exported).toBeNull();
    const second = await train({ configs: ['demo'], overrides: tiny(outB) });
    expect(second.lastIteration).toBe(11);
    expect(await maxDiff(path.join(out, 'checkpoints', 'ckpt-0000011.safetensors'), path.join(outB, 'checkpoints', 'ckpt-0000011.safetensors'))).toBe(0);
    expect(await readFile(path.join(outB, 'train.log'), 'utf8')).toMatch(/resuming from .*ckpt-0000005\.safetensors at iteration 6/);

    // ---- a prepared cache (same shorter side) trains exactly like the raw files ----
    const cacheDir = path.join(tmp, 'cache');
    const prep = cli(['prepare', '--out', cacheDir, '--root', data, '--size', '96', '-q']);
    expect(prep.code, prep.stderr).toBe(0);
    const outC = path.join(tmp, 'run-cache');
    const fromCache = await train({ configs: ['demo'], overrides: tiny(outC, [`data.cache=${cacheDir}`]) });
    expect(fromCache.lastIteration).toBe(11);
    expect(await maxDiff(path.join(out, 'checkpoints', 'ckpt-0000011.safetensors'), path.join(outC, 'checkpoints', 'ckpt-0000011.safetensors'))).toBe(0);
    await expect(train({ configs: ['demo'], overrides: tiny(path.join(tmp, 'run-c2'), [`data.cache=${cacheDir}`, 'data.base_size=64']) })).rejects.toThrow(
      /prepared with shorter side 96, but data.base_size is 64/,
    );

    // ---- another configuration in the same folder is refused unless forced ----
    await expect(train({ configs: ['demo'], overrides: tiny(outB, ['optim.base_lr=0.001']) })).rejects.toThrow(/optim\.base_lr.*--force/);
    const forced = await train({ configs: ['demo'], overrides: tiny(outB, ['optim.base_lr=0.001']), force: true });
    expect(forced.lastIteration).toBe(11);
    // A key of the native configuration (stored in the checkpoint): refused by the folder, then by nothing once forced.
    await expect(train({ configs: ['demo'], overrides: tiny(outB, ['optim.clip_grad=2']) })).rejects.toThrow(/optim\.clip_grad.*--force/);
    const forcedNative = await train({ configs: ['demo'], overrides: tiny(outB, ['optim.clip_grad=2']), force: true });
    expect(forcedNative.lastIteration).toBe(11);
  });

  it('skips unreadable images up to data.max_bad_fraction, refuses empty data', async () => {
    const bad = path.join(tmp, 'bad-data');
    await mkdir(path.join(bad, 'images'), { recursive: true });
    for (const f of (await readdir(path.join(data, 'images'))).slice(0, 8)) {
      await writeFile(path.join(bad, 'images', f), await readFile(path.join(data, 'images', f)));
    }
    await writeFile(path.join(bad, 'images', 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\nnot really'));
    // Also covers Sinkhorn-Knopp targets, a separate iBOT head and gradient accumulation through the loop.
    const run = (frac: string, out: string) =>
      train({
        configs: ['demo'],
        overrides: [
          ...tiny(out, [`data.root=${bad}`, `data.max_bad_fraction=${frac}`, 'optim.epochs=1', 'optim.warmup_epochs=0']),
          'train.centering=sinkhorn_knopp',
          'ibot.separate_head=true',
          'ibot.head_n_prototypes=128',
          'optim.accumulate_grad_batches=2',
        ],
      });
    await expect(run('0', path.join(tmp, 'bad-strict'))).rejects.toThrow(/1 of 9 images are unreadable.*max_bad_fraction=0/);
    const ok = await run('0.2', path.join(tmp, 'bad-lenient'));
    expect(ok.lastIteration).toBe(5);
    const recs = (await readFile(path.join(tmp, 'bad-lenient', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(recs.every((r) => Number.isFinite(r.total_loss) && r.grad_norm_ibot_head > 0)).toBe(true);
    // accumulation multiplies the peak lr (docs/recipe.md §1): 2 × 3e-4 at the end of a 0-epoch warm-up.
    expect(recs[0].lr).toBeCloseTo(6e-4, 10);
    expect(await readFile(path.join(tmp, 'bad-lenient', 'train.log'), 'utf8')).toMatch(/skipping unreadable image .*broken\.png/);
    // data.datasets: an image folder and a CheXpert-style CSV (the phantoms' labels.csv), mixed by weight.
    const mixed = await train({
      configs: ['demo'],
      overrides: [
        ...tiny(path.join(tmp, 'mixed'), ['optim.epochs=1', 'optim.warmup_epochs=0']),
        `data.datasets=[{name: folder, root: ${bad}, weight: 1}, {name: csv, root: ${data}, manifest: labels.csv, weight: 3}]`,
        'data.mixture=weighted',
        'data.max_bad_fraction=0.2',
      ],
    });
    expect(mixed.lastIteration).toBe(5);
    expect(await readFile(path.join(tmp, 'mixed', 'train.log'), 'utf8')).toMatch(/data\.datasets\[1\]: csv at .*: 16 images/);
    await expect(
      train({ configs: ['demo'], overrides: [...tiny(path.join(tmp, 'mixed2')), 'data.datasets=[{name: imagenet, root: x}]'] }),
    ).rejects.toThrow(/data\.datasets/);
    const empty = path.join(tmp, 'empty');
    await mkdir(empty, { recursive: true });
    const r = cli(['train', '--config', 'demo', ...tiny(path.join(tmp, 'run-empty'), [`data.root=${empty}`]), '-q']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/empty/i);
    const missing = cli(['train', '--config', 'demo', ...tiny(path.join(tmp, 'run-m'), [`data.root=${path.join(tmp, 'nope')}`]), '-q']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope/);
    const u = cli(['train', '--config', 'demo', ...tiny(path.join(tmp, 'run-u'), ['optim.lr=1'])]);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/optim\.lr/);
  });

  it('stops on a non-finite loss naming the iteration and term, keeping the last checkpoint', async () => {
    const out = path.join(tmp, 'run-nan');
    const r = cli(['train', '--config', 'demo', ...tiny(out, ['optim.base_lr=1e30', 'optim.clip_grad=0', 'checkpoint.period_iterations=1']), '-q']);
    expect(r.code).toBe(1);
    const m = /iteration (\d+): (\w+) is (NaN|inf|-inf)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const failed = Number(m?.[1]);
    // The term that went non-finite, not their sum.
    expect(m?.[2]).not.toBe('total_loss');
    expect(await readFile(path.join(out, 'train.log'), 'utf8')).toMatch(new RegExp(`error: .*iteration ${failed}: ${m?.[2]} is`));
    const ck = (await readdir(path.join(out, 'checkpoints'))).sort();
    expect(ck[ck.length - 1]).toBe(`ckpt-${String(failed - 1).padStart(7, '0')}.safetensors`);
    // The kept checkpoint is complete and loads.
    expect((await tensors(path.join(out, 'checkpoints', ck[ck.length - 1] as string))).size).toBeGreaterThan(100);
  });
});

describe('Trainer library API', () => {
  it('steps on explicit crops, deterministically for a seed', async () => {
    const make = () => Trainer.create({ configs: ['demo'], overrides: tiny(path.join(tmp, 'lib')) });
    const [a, b] = await Promise.all([make(), make()]);
    const B = 4;
    const rnd = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 1.5);
    const batch = {
      globals: { data: rnd(2 * B * 3 * 56 * 56, 1), shape: [2 * B, 3, 56, 56] as [number, number, number, number] },
      locals: { data: rnd(2 * B * 3 * 28 * 28, 2), shape: [2 * B, 3, 28, 28] as [number, number, number, number] },
      masks: Uint8Array.from({ length: 2 * B * 16 }, (_, i) => (i % 5 === 0 && i < 64 ? 1 : 0)),
    };
    const r1 = await a.step(batch, 0);
    const r2 = await b.step(batch, 0);
    const losses = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).filter(([k]) => !k.startsWith('ms_')));
    expect(losses(r1 as unknown as Record<string, number>)).toEqual(losses(r2 as unknown as Record<string, number>));
    expect(r1.ms_backward).toBeGreaterThan(0);
    expect(r1.n_masked).toBe(13);
    expect(r1.total_loss).toBeCloseTo(r1.dino_local_crops_loss + r1.dino_global_crops_loss + r1.koleo_loss + r1.ibot_loss, 5);
    const r3 = await a.step(batch, 1);
    expect(Number.isFinite(r3.total_loss)).toBe(true);
    await expect(a.step({ ...batch, masks: new Uint8Array(3) }, 2)).rejects.toMatchObject({ code: 'CXF_ARG' });
  });
});
