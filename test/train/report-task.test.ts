/**
 * `cxformer finetune --task report` and `cxformer generate` end to end on phantoms (built dist/cli/main.js and the
 * native addon; `npm run build` first), with the tiny golden ViT as the frozen backbone so that a run takes seconds:
 * the run folder's files, `generate` agreeing with the run's own test predictions, the same seed giving byte-identical
 * predictions, a run killed with SIGKILL and re-run giving what an uninterrupted run gives, memorisation of 32 training
 * pairs, streaming (library and --stream, cancellation), --mode full (the encoder trained end to end, exact resume),
 * and the clear errors of bad input.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { phantomFolder } from '../helpers/phantom-folder.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
const ph = phantomFolder('cxf-report-task-', { n: 160, seed: 21, size: 224 });

/** Small and fast: 112 px memories of the tiny ViT (8×8 patches pooled 2×2), a 2-layer d-64 decoder. */
function args(out: string, extra: string[] = []): string[] {
  return ['finetune', '--task', 'report', '--root', ph.data, '--weights', TINY, '--out', out, '--resize', '112', '--crop', '112', '--memory-pool', '2', '--tokenizer', 'word-cased:1', '--epochs', '3', '--head-batch-size', '16', '--lr', '0.001', '--bootstrap', '20', '--threads', '1', ...extra];
}

function cli(a: string[], timeout = 600_000) {
  const r = spawnSync(process.execPath, [MAIN, ...a], { encoding: 'utf8', timeout, env: { ...process.env, CXFORMER_REPORT: '0' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI with `a`, kills it (SIGKILL) as soon as `out`'s training state exists; true if it existed. */
async function killAfterFirstState(a: string[], out: string): Promise<boolean> {
  const child = spawn(process.execPath, [MAIN, ...a], { stdio: 'ignore', env: { ...process.env, CXFORMER_REPORT: '0' } });
  const state = path.join(out, 'checkpoints', 'state.safetensors');
  const t0 = Date.now();
  while (!existsSync(state) && Date.now() - t0 < 300_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return existsSync(state);
}

const lines = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));

describe('finetune --task report', () => {
  it('writes the run folder; generate decodes what the run predicted; the same seed gives the same bytes', { timeout: 600_000 }, async () => {
    const out = path.join(ph.tmp, 'run1');
    const r = cli(args(out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/captioner: [\d.]+ M parameters/);
    expect(r.stderr).toMatch(/test: label micro F1 [\d.n/a]+ \(most frequent report [\d.n/a]+, 1-NN report [\d.n/a]+\)/);
    for (const f of ['settings.json', 'tokenizer.json', 'metrics.jsonl', 'history.jsonl', 'checkpoints/state.safetensors', 'best/model.safetensors', 'best/config.json', 'best/tokenizer.json', 'best/report-model.json', 'best/backbone/config.json', 'predictions.jsonl', 'eval/report.json', 'eval/report.md', 'baselines.json']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const history = await lines(path.join(out, 'history.jsonl'));
    expect(history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    const metrics = await lines(path.join(out, 'metrics.jsonl'));
    const train = (await readFile(path.join(ph.data, 'labels.csv'), 'utf8')).split('\n').filter((l) => l.endsWith(',train')).length;
    expect(metrics).toHaveLength(3 * Math.ceil(train / 16));
    expect(metrics.map((m) => m.step)).toEqual(metrics.map((_, i) => i));
    const preds = await lines(path.join(out, 'predictions.jsonl'));
    expect(preds.length).toBeGreaterThan(5);
    for (const p of preds) expect(Object.keys(p).sort()).toEqual(['generated', 'id', 'image', 'patient', 'reference']);
    const rep = JSON.parse(await readFile(path.join(out, 'eval', 'report.json'), 'utf8'));
    expect(rep).toMatchObject({ task: 'report', protocol: 'cxformer', pairs: preds.length, labeler: { name: 'phantom' } });
    const base = JSON.parse(await readFile(path.join(out, 'baselines.json'), 'utf8'));
    expect(Object.keys(base)).toEqual(expect.arrayContaining(['model', 'most_frequent_report', 'nearest_neighbour_report', 'mostFrequentReport']));

    // generate with the best/ folder reproduces the run's greedy test reports.
    const imgs = preds.slice(0, 4).map((p) => p.image as string);
    const g = cli(['generate', '--model', path.join(out, 'best'), ...imgs, '--out', path.join(ph.tmp, 'gen.jsonl'), '-q']);
    expect(g.code, g.stderr).toBe(0);
    const gen = await lines(path.join(ph.tmp, 'gen.jsonl'));
    expect(gen.map((x) => x.generated)).toEqual(preds.slice(0, 4).map((p) => p.generated));
    const beam1 = cli(['generate', '--model', path.join(out, 'best'), imgs[0]!, '--beam', '1']);
    expect(beam1.code, beam1.stderr).toBe(0);
    expect(beam1.stdout.trim().split('\n')[1]).toBe(preds[0].generated);

    // Same seed, same bytes.
    const out2 = path.join(ph.tmp, 'run2');
    expect(cli(args(out2)).code).toBe(0);
    expect(await readFile(path.join(out2, 'predictions.jsonl'), 'utf8')).toBe(await readFile(path.join(out, 'predictions.jsonl'), 'utf8'));
    expect(await readFile(path.join(out2, 'metrics.jsonl'), 'utf8')).toBe(await readFile(path.join(out, 'metrics.jsonl'), 'utf8'));
  });

  it('a run killed with SIGKILL after its first epoch and re-run ends as the uninterrupted run', { timeout: 600_000 }, async () => {
    const ref = path.join(ph.tmp, 'run1');
    const out = path.join(ph.tmp, 'killed');
    expect(await killAfterFirstState(args(out), out)).toBe(true);
    const r = cli(args(out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/resume: epoch [12] of 3/);
    expect(await readFile(path.join(out, 'predictions.jsonl'), 'utf8')).toBe(await readFile(path.join(ref, 'predictions.jsonl'), 'utf8'));
    expect(await readFile(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(await readFile(path.join(ref, 'metrics.jsonl'), 'utf8'));
    // Other training settings in the same folder are refused, naming them.
    const changed = cli(args(out, ['--lr', '0.002']));
    expect(changed.code).toBe(2);
    expect(changed.stderr).toMatch(/other settings \(.*lr.*\)/);
  });

  it('--no-memory-cache computes the frozen memories at every step: the cached run within float noise, nothing cached', { timeout: 600_000 }, async () => {
    const out = path.join(ph.tmp, 'nocache');
    const r = cli(args(out, ['--no-memory-cache', '--epochs', '2']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/memory: computed at every step by the frozen encoder \(cached it would take [\d.]+ GiB\)/);
    expect((await readdir(out)).filter((f) => f.startsWith('memory-'))).toEqual([]);
    expect(JSON.parse(await readFile(path.join(out, 'settings.json'), 'utf8')).memoryCache).toBe(false);
    expect(JSON.parse(await readFile(path.join(out, 'best', 'report-model.json'), 'utf8')).encoder).toBe('frozen');
    // The same backbone weights as the input (the encoder never moves).
    const { readSafetensors } = await import('../../src/io/safetensors.js');
    const before = (await readSafetensors(path.join(TINY, 'model.safetensors'))).tensors;
    const after = (await readSafetensors(path.join(out, 'best', 'backbone', 'model.safetensors'))).tensors;
    for (const [k, t] of after) expect(Array.from(t.data as Float32Array), k).toEqual(Array.from(before.get(k)!.data as Float32Array));
    // The cached run of the same settings: the memories differ only by float summation order (TypeScript pooling
    // there, torch's avg_pool2d here), so the losses agree closely.
    const cached = path.join(ph.tmp, 'cached2');
    expect(cli(args(cached, ['--epochs', '2'])).code).toBe(0);
    const [a, b] = [await lines(path.join(out, 'metrics.jsonl')), await lines(path.join(cached, 'metrics.jsonl'))];
    expect(a.map((m) => m.step)).toEqual(b.map((m) => m.step));
    for (const [x, y] of a.map((m, i) => [m, b[i]] as const)) expect(Math.abs(x.loss - y.loss)).toBeLessThan(1e-3 * (1 + y.loss));
    // generate (best/: backbone + decoder) reproduces the run's test reports.
    const preds = await lines(path.join(out, 'predictions.jsonl'));
    const imgs = preds.slice(0, 3).map((p) => p.image as string);
    const g = cli(['generate', '--model', path.join(out, 'best'), ...imgs, '--out', path.join(ph.tmp, 'nocache-gen.jsonl'), '-q']);
    expect(g.code, g.stderr).toBe(0);
    expect((await lines(path.join(ph.tmp, 'nocache-gen.jsonl'))).map((x) => x.generated)).toEqual(preds.slice(0, 3).map((p) => p.generated));
  });

  it('--mode full trains the encoder: best/backbone moves, generate decodes what the run predicted, a killed run resumes exactly', { timeout: 600_000 }, async () => {
    const full = (out: string) => args(out, ['--mode', 'full', '--backbone-lr', '0.001', '--epochs', '2']);
    const out = path.join(ph.tmp, 'full');
    const r = cli(full(out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/encoder: trained end to end/);
    for (const f of ['best/backbone/model.safetensors', 'best/backbone/config.json', 'best/backbone/preprocessor_config.json', 'predictions.jsonl', 'eval/report.json', 'baselines.json']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    expect(existsSync(path.join(out, 'memory-train.safetensors'))).toBe(false);
    const meta = JSON.parse(await readFile(path.join(out, 'best', 'report-model.json'), 'utf8'));
    expect(meta).toMatchObject({ encoder: 'trained', memory: { block: -1, pool: 2 } });
    // The exported encoder moved away from the initial weights (every block and the patch embedding).
    const { readSafetensors } = await import('../../src/io/safetensors.js');
    const before = (await readSafetensors(path.join(TINY, 'model.safetensors'))).tensors;
    const after = (await readSafetensors(path.join(out, 'best', 'backbone', 'model.safetensors'))).tensors;
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    const moved = [...after.keys()].filter((k) => (after.get(k)!.data as Float32Array).some((v, i) => v !== (before.get(k)!.data as Float32Array)[i]));
    for (const k of ['embeddings.patch_embeddings.projection.weight', 'encoder.layer.0.attention.attention.query.weight', 'encoder.layer.2.mlp.fc2.weight', 'layernorm.weight']) expect(moved, k).toContain(k);
    // generate with best/ (its trained encoder) reproduces the run's test reports.
    const preds = await lines(path.join(out, 'predictions.jsonl'));
    const imgs = preds.slice(0, 3).map((p) => p.image as string);
    const g = cli(['generate', '--model', path.join(out, 'best'), ...imgs, '--out', path.join(ph.tmp, 'full-gen.jsonl'), '-q']);
    expect(g.code, g.stderr).toBe(0);
    expect((await lines(path.join(ph.tmp, 'full-gen.jsonl'))).map((x) => x.generated)).toEqual(preds.slice(0, 3).map((p) => p.generated));

    // Killed after its first epoch's state and re-run: the uninterrupted run's bytes.
    const killed = path.join(ph.tmp, 'full-killed');
    expect(await killAfterFirstState(full(killed), killed)).toBe(true);
    const again = cli(full(killed));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resume: epoch 1 of 2/);
    for (const f of ['predictions.jsonl', 'metrics.jsonl', 'best/backbone/model.safetensors']) {
      expect(await readFile(path.join(killed, f)), f).toEqual(await readFile(path.join(out, f)));
    }
  });

  it('memorises 32 training pairs within 400 steps: greedy decoding reproduces every training report exactly', { timeout: 600_000 }, async () => {
    const out = path.join(ph.tmp, 'overfit');
    // 100 epochs × 4 steps = 400 steps; validated only after the last, so best/ is the final model.
    const r = cli(args(out, ['--max-train', '32', '--epochs', '100', '--head-batch-size', '8', '--lr', '0.002', '--bootstrap', '0', '--val-every', '100']));
    expect(r.code, r.stderr).toBe(0);
    const train = (await readFile(path.join(ph.data, 'labels.csv'), 'utf8')).split('\n').filter((l) => l.endsWith(',train')).map((l) => l.split(',')[0]!);
    // The 32 records the run trained on: those in memory-train.safetensors' ids.
    const { readSafetensors } = await import('../../src/io/safetensors.js');
    const ids = JSON.parse((await readSafetensors(path.join(out, 'memory-train.safetensors'))).metadata!.ids!) as string[];
    expect(ids).toHaveLength(32);
    expect(ids.every((id) => train.includes(id))).toBe(true);
    const reports = new Map((await readFile(path.join(ph.data, 'reports.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => {
      const i = l.indexOf(',');
      return [l.slice(0, i), l.slice(i + 1).replace(/^"|"$/g, '')] as const;
    }));
    const g = cli(['generate', '--model', path.join(out, 'best'), ...ids.map((id) => path.join(ph.data, id)), '--out', path.join(ph.tmp, 'overfit.jsonl'), '-q']);
    expect(g.code, g.stderr).toBe(0);
    const gen = await lines(path.join(ph.tmp, 'overfit.jsonl'));
    const wrong = gen.map((x, i) => (x.generated === reports.get(ids[i]!) ? '' : `${x.generated} ≠ ${reports.get(ids[i]!)}`)).filter(Boolean);
    expect(wrong).toEqual([]);

    // Streaming (library): one event per token, then a closing event with the report; the pieces join to it.
    const { loadReportGenerator } = await import('../../src/rrg/generate.js');
    const best = path.join(out, 'best');
    const gen3 = await loadReportGenerator(best, { threads: 1 });
    const three = ids.slice(0, 3).map((id) => path.join(ph.data, id));
    for (const o of [{}, { strategy: 'beam' as const, numBeams: 3 }]) {
      const events = [];
      for await (const e of gen3.stream(three, o)) events.push(e);
      const want = await gen3.generate(three, o);
      for (let i = 0; i < 3; i++) {
        const mine = events.filter((e) => e.index === i);
        const close = mine.at(-1)!;
        expect(close.report).toBe(want[i]);
        expect(close.token).toBeUndefined();
        expect(mine.map((e) => e.text).join('')).toBe(want[i]);
        expect(mine.slice(0, -1).every((e) => typeof e.token === 'number' && e.image === three[i])).toBe(true);
        expect(mine.length - 1).toBeGreaterThan(want[i]!.split(' ').length - 1); // word tokens + punctuation
      }
      expect(events.map((e) => e.index)).toEqual([...events.map((e) => e.index)].sort((a, b) => a - b));
    }
    // Leaving the loop at the first token cancels that decoding; the generator goes on working.
    for await (const e of gen3.stream(three)) {
      expect(e.index).toBe(0);
      break;
    }
    expect((await import('node:util')).isDeepStrictEqual(await gen3.generate(three), ids.slice(0, 3).map((id) => reports.get(id)))).toBe(true);

    // Tokens are handed over while the decoder runs: a callback that answers false cancels a long sampled decoding.
    const { ReportModel } = await import('../../src/rrg/native.js');
    const { extractMemory } = await import('../../src/rrg/memory.js');
    const { loadBackbone } = await import('../../src/backbone.js');
    const meta = JSON.parse(await readFile(path.join(best, 'report-model.json'), 'utf8'));
    const model = await ReportModel.load(best, { threads: 1 });
    const bb = await loadBackbone({ weights: path.join(best, 'backbone'), threads: 1 });
    const mem = await extractMemory(bb, [three[0]!], { block: meta.memory.block, pool: meta.memory.pool, preprocess: meta.preprocess });
    const long = { strategy: 'sample' as const, temperature: 50, seed: 3, maxNewTokens: model.config.maxPositions - 1 };
    const full = await model.generate({ data: mem.data, shape: mem.shape }, long);
    expect(full.tokens[0]!.length).toBeGreaterThan(40);
    let calls = 0;
    await expect(model.generateStream({ data: mem.data, shape: mem.shape }, long, () => (++calls, false))).rejects.toMatchObject({ code: 'CXF_CANCELLED' });
    expect(calls).toBeLessThan(full.tokens[0]!.length);
    // The model is usable after a cancellation; the stream of the same decoding gives its tokens in order.
    const seen: number[] = [];
    const again = await model.generateStream({ data: mem.data, shape: mem.shape }, long, (row, t) => void seen.push(row, t));
    expect(again.tokens).toEqual(full.tokens);
    await new Promise((r) => setTimeout(r, 50));
    const eos = JSON.parse(await readFile(path.join(best, 'config.json'), 'utf8')).eosId ?? 2;
    expect(seen.filter((_, i) => i % 2 === 1).filter((t) => t !== eos)).toEqual(full.tokens[0]);
    expect(seen.filter((_, i) => i % 2 === 0).every((r) => r === 0)).toBe(true);

    // The CLI's --stream prints what the plain command prints, and still writes --out.
    const plain = cli(['generate', '--model', best, ...three]);
    const streamed = cli(['generate', '--model', best, ...three, '--stream', '--out', path.join(ph.tmp, 'streamed.jsonl')]);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toBe(plain.stdout);
    expect((await lines(path.join(ph.tmp, 'streamed.jsonl'))).map((x) => x.generated)).toEqual(ids.slice(0, 3).map((id) => reports.get(id)));
  });

  it('names the file, row or folder of bad input', async () => {
    const bad = path.join(ph.tmp, 'bad');
    await mkdir(bad, { recursive: true });
    await writeFile(path.join(bad, 'tokenizer.json'), '{"version": "1.0", "model": ');
    const tok = cli(args(path.join(ph.tmp, 'tok-run'), ['--tokenizer', path.join(bad, 'tokenizer.json')]));
    expect(tok.code).toBe(2);
    expect(tok.stderr).toMatch(/bad\/tokenizer\.json/);
    const gen = cli(['generate', '--model', ph.data, path.join(ph.data, 'images', 'P00001_01.png')]);
    expect(gen.code).toBe(2);
    expect(gen.stderr).toMatch(/not a report captioner folder: missing report-model\.json, model\.safetensors, config\.json, tokenizer\.json/);
    const lab = cli(args(path.join(ph.tmp, 'lab-run'), ['--labeler', 'labels:x.csv']));
    expect(lab.code).toBe(2);
    expect(lab.stderr).toMatch(/--labeler for report training must be phantom or rules .*got 'labels:x\.csv'/);
    const noRoot = cli(args(path.join(ph.tmp, 'x'), ['--root', bad]));
    expect(noRoot.code).toBe(2);
    expect(noRoot.stderr).toMatch(/bad.*reports\.csv|reports\.csv.*bad/);
  });
});
