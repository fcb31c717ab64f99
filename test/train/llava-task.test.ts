/**
 * `cxformer finetune --task report --decoder llm` (the LLaVA recipe), `generate` and `export --format llava-hf` end
 * to end on phantoms (built dist/cli/main.js and the native addon), with the tiny golden ViT at 112 px as the frozen
 * tower and the tiny random Qwen2 of fixtures/golden/lm as the LM:
 * - align: the loss falls ≥ 30 % within 200 steps and only the projector changes (every tower and LM tensor of the
 *   exported model equals its source bit for bit; the embedding grew by the one `<image>` row, the mean of the
 *   others); `<image>` is added to the tokenizer exactly once, also on a re-run;
 * - a run killed with SIGKILL after its first training state and re-run gives the bytes of an uninterrupted run;
 * - finetune with LoRA after it (the LM's chat template, the indication and classifier prompt fields with a linear
 *   probe's head): the PEFT adapter folder, `generate` reproducing the run's test predictions (the findings
 *   recomputed by the model folder's classifier), streaming, the export reloading with the same reports;
 * - bad input: an LM of an unsupported family (then the corrected command in the same folder), a LLaVA whose
 *   projector does not fit the tower, a missing --lm, an unknown or incomplete prompt field, a missing classifier
 *   head, a chat template that does not parse.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { readSafetensors } from '../../src/io/safetensors.js';
import { phantomFolder } from '../helpers/phantom-folder.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
const QWEN2 = path.dirname(goldenFile('lm/qwen2/config.json'));
const ph = phantomFolder('cxf-llava-task-', { n: 120, seed: 5, size: 224 });

/** A chat template whose turns end with the LM's EOS (Zephyr's shape), so that the tiny LM needs no new tokens. */
const CHAT = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

function args(out: string, lm: string, extra: string[] = []): string[] {
  return ['finetune', '--task', 'report', '--decoder', 'llm', '--lm', lm, '--root', ph.data, '--weights', TINY, '--out', out, '--resize', '112', '--crop', '112', '--head-batch-size', '8', '--max-report-tokens', '48', '--bootstrap', '10', '--threads', '1', ...extra];
}

function cli(a: string[], timeout = 600_000) {
  const r = spawnSync(process.execPath, [MAIN, ...a], { encoding: 'utf8', timeout, env: { ...process.env, CXFORMER_REPORT: '0' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lines = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));

/** A copy of the tiny Qwen2 with a chat template (the golden folders have none). */
function qwenWithChat(): string {
  const dir = path.join(ph.tmp, 'qwen2-chat');
  if (!existsSync(dir)) {
    cpSync(QWEN2, dir, { recursive: true });
    const f = path.join(dir, 'tokenizer_config.json');
    writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), chat_template: CHAT }, null, 2));
  }
  return dir;
}

describe('finetune --task report --decoder llm', () => {
  const out = () => path.join(ph.tmp, 'run');

  it('align: the loss falls ≥ 30 % in 200 steps and only the projector changes; <image> is added once', { timeout: 600_000 }, async () => {
    // 96 training reports / 8 = 12 steps per epoch: 17 epochs = 204 steps.
    const r = cli(args(out(), QWEN2, ['--stage', 'align', '--epochs', '17', '--lr', '0.01']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/tokenizer: <image> added as token 500 \(501 tokens\)/);
    expect(r.stderr).toMatch(/align: the LM's vocabulary grew from 500 to 501 rows/);
    const metrics = (await lines(path.join(out(), 'metrics.jsonl'))).filter((m) => m.stage === 'align');
    expect(metrics.length).toBeGreaterThanOrEqual(200);
    const first = metrics[0].loss as number;
    const at = metrics.slice(0, 200).findIndex((m) => m.loss <= 0.7 * first);
    expect(at, `losses ${metrics.slice(0, 200).map((m) => m.loss.toFixed(2)).join(' ')}`).toBeGreaterThan(0);

    // The exported align model: tower and LM bit for bit their sources, the new embedding row the mean.
    const model = await readSafetensors(path.join(out(), 'align', 'model', 'model.safetensors'));
    const tower = await readSafetensors(path.join(TINY, 'model.safetensors'));
    const lm = await readSafetensors(path.join(QWEN2, 'model.safetensors'));
    let checked = 0;
    for (const [k, t] of tower.tensors) {
      const m = model.tensors.get(`vision_tower.${k}`);
      if (!m) continue; // e.g. a mask token the tower keeps and transformers' layout writes too
      expect(Buffer.from((m.data as Float32Array).buffer).equals(Buffer.from(Float32Array.from(t.data as Float32Array).buffer)), k).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThan(10);
    for (const [k, t] of lm.tensors) {
      const m = model.tensors.get(`language_model.${k}`)!;
      expect(m, k).toBeDefined();
      const src = t.data as Float32Array;
      const got = m.data as Float32Array;
      if (k === 'model.embed_tokens.weight') {
        const d = t.shape[1]!;
        expect(m.shape).toEqual([501, d]);
        expect(got.subarray(0, src.length)).toEqual(src);
        for (let j = 0; j < d; j++) {
          let s = 0;
          for (let i = 0; i < 500; i++) s += src[i * d + j]!;
          expect(got[500 * d + j]).toBeCloseTo(s / 500, 6);
        }
      } else expect(got, k).toEqual(src);
    }
    expect([...model.tensors.keys()].filter((k) => k.startsWith('multi_modal_projector.')).sort()).toEqual(['multi_modal_projector.linear_1.bias', 'multi_modal_projector.linear_1.weight', 'multi_modal_projector.linear_2.bias', 'multi_modal_projector.linear_2.weight']);

    // The tokenizer holds <image> once, in the run folder and the model folder.
    for (const f of [path.join(out(), 'tokenizer', 'tokenizer.json'), path.join(out(), 'align', 'model', 'tokenizer.json')]) {
      const tok = JSON.parse(await readFile(f, 'utf8'));
      expect(tok.added_tokens.filter((t: { content: string }) => t.content === '<image>'), f).toEqual([expect.objectContaining({ id: 500, special: true })]);
    }
    const cfg = JSON.parse(await readFile(path.join(out(), 'align', 'model', 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'llava', image_token_index: 500, text_config: { model_type: 'qwen2', vocab_size: 501 }, vision_feature_layer: -2 });
    // info reads the folder (no LibTorch): 112 px = 8×8 patches + CLS + 2 registers.
    const info = cli(['info', path.join(out(), 'align', 'model')]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/cxformer:\s+stage align, prompt plain, validation loss \d/);
  });

  it('a run killed after its first state and re-run gives the bytes of an uninterrupted run', { timeout: 600_000 }, async () => {
    const a = (o: string) => args(o, QWEN2, ['--stage', 'align', '--epochs', '3', '--lr', '0.01', '--max-train', '40']);
    const whole = path.join(ph.tmp, 'whole');
    expect(cli(a(whole)).code).toBe(0);
    const killed = path.join(ph.tmp, 'killed');
    const child = spawn(process.execPath, [MAIN, ...a(killed)], { stdio: 'ignore', env: { ...process.env, CXFORMER_REPORT: '0' } });
    const state = path.join(killed, 'align', 'state.safetensors');
    const t0 = Date.now();
    while (!existsSync(state) && Date.now() - t0 < 300_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(path.join(killed, 'align', 'model', 'cxformer-llava.json')), 'killed before the end').toBe(false);
    const r = cli(a(killed));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/align: resume at epoch [12] of 3/);
    const bytes = (d: string) => readFileSync(path.join(d, 'align', 'model', 'model.safetensors'));
    expect(bytes(killed).equals(bytes(whole))).toBe(true);
    expect(readFileSync(path.join(killed, 'metrics.jsonl'), 'utf8')).toBe(readFileSync(path.join(whole, 'metrics.jsonl'), 'utf8'));
  });

  it('finetune with LoRA after align: adapters, predictions that generate reproduces, streaming, export', { timeout: 600_000 }, async () => {
    const lm = qwenWithChat();
    // Another LM folder is another run: a new --out, with align/ taken from the first run's aligned model.
    const run2 = path.join(ph.tmp, 'run-ft');
    cpSync(path.join(out(), 'align'), path.join(run2, 'align'), { recursive: true });
    // A linear-probe head on the same tower at the run's preprocessing: the classifier prompt field.
    const probe = path.join(ph.tmp, 'probe');
    const pr = cli(['finetune', '--config', 'phantom', '--root', ph.data, '--weights', TINY, '--resize', '112', '--crop', '112', '--cls-layers', '1', '--epochs', '5', '--bootstrap', '0', '--out', probe, '-q']);
    expect(pr.code, pr.stderr).toBe(0);
    const head = path.join(probe, 'head.safetensors');
    const r = cli(args(run2, lm, ['--stage', 'finetune', '--epochs', '2', '--lora-rank', '4', '--lora-alpha', '8', '--lr', '0.002', '--lm-lr', '0.002', '--condition', 'indication,classifier', '--classifier', head]));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/finetune prompt: chat/);
    expect(r.stderr).toMatch(/classifier: 4 classes \(Cardiomegaly, Pleural Effusion, Nodule, Pneumothorax\), findings of \d+ images/);
    const found = JSON.parse(await readFile(path.join(run2, 'classifier-findings.json'), 'utf8'));
    expect(Object.keys(found.findings).length).toBeGreaterThan(100);
    for (const f of ['classifier/head.safetensors', 'classifier/backbone/config.json', 'classifier/backbone/model.safetensors']) expect(existsSync(path.join(run2, 'finetune', 'model', f)), f).toBe(true);
    expect(r.stderr).toMatch(/finetune: [\d.]+ M of [\d.]+ M parameters trained/);
    const adapter = JSON.parse(await readFile(path.join(run2, 'finetune', 'adapter', 'adapter_config.json'), 'utf8'));
    expect(adapter).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8 });
    const ad = await readSafetensors(path.join(run2, 'finetune', 'adapter', 'adapter_model.safetensors'));
    expect([...ad.tensors.keys()].every((k) => /^base_model\.model\..*\.lora_[AB]\.weight$/.test(k))).toBe(true);
    const md = JSON.parse(await readFile(path.join(run2, 'finetune', 'model', 'cxformer-llava.json'), 'utf8'));
    expect(md).toMatchObject({ format: 'cxformer-llava', stage: 'finetune', prompt: { kind: 'chat', fields: ['indication', 'classifier'] } });

    const preds = await lines(path.join(run2, 'predictions.jsonl'));
    expect(preds.length).toBeGreaterThan(5);
    const rep = JSON.parse(await readFile(path.join(run2, 'eval', 'report.json'), 'utf8'));
    expect(rep).toMatchObject({ task: 'report', pairs: preds.length });
    const imgs = preds.slice(0, 3).map((p) => p.image as string);
    const g = cli(['generate', '--model', path.join(run2, 'finetune', 'model'), ...imgs, '--out', path.join(ph.tmp, 'gen.jsonl'), '-q']);
    expect(g.code, g.stderr).toBe(0);
    expect((await lines(path.join(ph.tmp, 'gen.jsonl'))).map((x) => x.generated)).toEqual(preds.slice(0, 3).map((p) => p.generated));
    const s = cli(['generate', '--model', path.join(run2, 'finetune', 'model'), imgs[0]!, '--stream']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toBe(`${imgs[0]}\n${preds[0].generated}\n\n`);

    // generate recomputed each image's findings with the folder's classifier/ (the same reports as the run's). Phantom
    // records have no indication, so their prompts carry none; one given to generate changes the prompt.
    const withInd = cli(['generate', '--model', path.join(run2, 'finetune', 'model'), imgs[0]!, '--indication', 'Shortness of breath.']);
    expect(withInd.code, withInd.stderr).toBe(0);
    // Sampling with top-k 1 keeps only the most probable token: the greedy report, at any temperature.
    const k1 = cli(['generate', '--model', path.join(run2, 'finetune', 'model'), imgs[0]!, '--sample', '--top-k', '1', '--temperature', '3', '--seed', '7']);
    expect(k1.code, k1.stderr).toBe(0);
    expect(k1.stdout.trim().split('\n')[1] ?? '').toBe(preds[0].generated);
    // bf16 weights (for GPUs; the CPU computes them too): a report comes out.
    const bf16 = cli(['generate', '--model', path.join(run2, 'finetune', 'model'), imgs[0]!, '--dtype', 'bf16']);
    expect(bf16.code, bf16.stderr).toBe(0);
    expect(bf16.stdout.trim().split('\n')[0]).toBe(imgs[0]);

    // export --format llava-hf reloads and decodes the same reports.
    const ex = path.join(ph.tmp, 'exported');
    const e = cli(['export', run2, '--format', 'llava-hf', '--out', ex]);
    expect(e.code, e.stderr).toBe(0);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'processor_config.json', 'cxformer-llava.json']) expect(existsSync(path.join(ex, f)), f).toBe(true);
    const g2 = cli(['generate', '--model', ex, imgs[0]!]);
    expect(g2.code, g2.stderr).toBe(0);
    expect(g2.stdout.trim().split('\n')[1] ?? '').toBe(preds[0].generated);
  });

  it('pooled visual tokens and a linear projector: a cxformer-only model that generate reads and export refuses', { timeout: 300_000 }, async () => {
    const run = path.join(ph.tmp, 'pooled');
    const r = cli(args(run, QWEN2, ['--stage', 'align', '--epochs', '1', '--memory-pool', '2', '--projector', 'linear', '--max-train', '16']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/patch tokens pooled 2×2, projector linear: the models are written with cxformer's config keys/);
    expect(r.stderr).toMatch(/align: .* 19 visual tokens per image/); // 8×8 patches pooled 2×2 = 16, + CLS + 2 registers
    const cfg = JSON.parse(await readFile(path.join(run, 'align', 'model', 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ cxformer_patch_pool: 2, cxformer_projector: 'linear' });
    const preds = await lines(path.join(run, 'predictions.jsonl'));
    const g = cli(['generate', '--model', path.join(run, 'align', 'model'), preds[0].image]);
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout.trim().split('\n')[1] ?? '').toBe(preds[0].generated);
    const e = cli(['export', run, '--format', 'llava-hf', '--out', path.join(ph.tmp, 'pooled-export')]);
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/uses patch pooling 2×2 and the linear projector, which transformers' LlavaForConditionalGeneration does not compute/);
  });

  it('bad input: an unsupported LM family, a projector that does not fit the tower, no --lm', { timeout: 300_000 }, async () => {
    const phi = path.join(ph.tmp, 'phi3');
    cpSync(QWEN2, phi, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(phi, 'config.json'), 'utf8'));
    writeFileSync(path.join(phi, 'config.json'), JSON.stringify({ ...cfg, model_type: 'phi3' }));
    const r = cli(args(path.join(ph.tmp, 'bad1'), phi, ['--stage', 'align', '--epochs', '1']));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/model_type "phi3" is not a supported causal LM family; supported: .*llama.*qwen2.*qwen3.*gpt2/);
    // The failed start left settings.json behind; the corrected command runs in the same folder.
    const fixed = cli(args(path.join(ph.tmp, 'bad1'), QWEN2, ['--stage', 'align', '--epochs', '1', '--max-train', '16', '--bootstrap', '0']));
    expect(fixed.code, fixed.stderr).toBe(0);

    // Prompt fields: an unknown one, the classifier field without its head, a head that does not exist.
    const ft = (extra: string[]) => cli(args(path.join(ph.tmp, 'bad3'), QWEN2, ['--stage', 'finetune', '--epochs', '1', ...extra]));
    const unknown = ft(['--condition', 'history']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--condition history: expected indication, classifier or both, comma-separated, each once/);
    const headless = ft(['--condition', 'classifier']);
    expect(headless.code).toBe(2);
    expect(headless.stderr).toMatch(/--condition classifier needs --classifier HEAD/);
    const noHead = ft(['--condition', 'classifier', '--classifier', path.join(ph.tmp, 'no-head.safetensors')]);
    expect(noHead.code).toBe(2);
    expect(noHead.stderr).toMatch(/--classifier .*no-head.safetensors: no such file/);
    expect(existsSync(path.join(ph.tmp, 'bad3')), 'refused before the run folder is made').toBe(false);

    // A chat template that does not parse: refused before any stage trains, naming its file.
    const broken = path.join(ph.tmp, 'qwen2-broken-chat');
    cpSync(QWEN2, broken, { recursive: true });
    const tc = path.join(broken, 'tokenizer_config.json');
    writeFileSync(tc, JSON.stringify({ ...JSON.parse(readFileSync(tc, 'utf8')), chat_template: '{% for m in messages %}{{ m.content }}' }));
    const bt = cli(args(path.join(ph.tmp, 'bad4'), broken, ['--epochs', '1']));
    expect(bt.code).toBe(2);
    expect(bt.stderr).toMatch(/tokenizer_config.json: the chat template does not parse/);
    expect(existsSync(path.join(ph.tmp, 'bad4', 'align', 'state.safetensors'))).toBe(false);

    // A LLaVA folder whose vision tower is narrower than its projector's input.
    const narrow = path.join(ph.tmp, 'narrow');
    cpSync(path.join(out(), 'align', 'model'), narrow, { recursive: true });
    const c = JSON.parse(readFileSync(path.join(narrow, 'config.json'), 'utf8'));
    const width = c.vision_config.hidden_size as number;
    writeFileSync(path.join(narrow, 'config.json'), JSON.stringify({ ...c, vision_config: { ...c.vision_config, hidden_size: width / 2, intermediate_size: width * 2 } }));
    const image = path.join(ph.data, 'images', readdirSync(path.join(ph.data, 'images'))[0]!);
    const g = cli(['generate', '--model', narrow, image]);
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(new RegExp(`linear_1 takes ${width} features, but the vision tower gives D_vit = ${width / 2}`));

    // --indication needs a model trained with the field in its prompt.
    const ind = cli(['generate', '--model', path.join(out(), 'align', 'model'), image, '--indication', 'Cough.']);
    expect(ind.code).toBe(2);
    expect(ind.stderr).toMatch(/--indication: .* was trained without indications in its prompt \(finetune --condition indication\)/);

    const n = cli(['finetune', '--task', 'report', '--decoder', 'llm', '--root', ph.data, '--weights', TINY, '--out', path.join(ph.tmp, 'bad2')]);
    expect(n.code).toBe(2);
    expect(n.stderr).toMatch(/give the language model folder with --lm DIR/);
  });
});
