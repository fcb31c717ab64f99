/**
 * LLaVA throughput (issue #16; part of `npm run bench`): training steps of the align stage (projector only, the
 * gradient flowing back through the frozen LM) and of the finetune stage with LoRA (r 64 on every LM linear layer),
 * and greedy generation, on random inputs: median of BENCH_LLAVA_RUNS timed calls after one warm-up.
 *
 * Shapes (BENCH_LLAVA_SHAPE):
 * - `tiny` (default, the CPU): the tiny golden ViT (fixtures/golden/vit_tiny_hf) at 112 px (67 visual tokens) + the
 *   tiny random Qwen2 of fixtures/golden/lm/qwen2 (2 layers, d 64), 48 report tokens, batch 8, 32 new tokens;
 * - `qwen05b` (a GPU): CXformer-S (ViT-S/14, 4 registers, random) at 518 px (1,374 visual tokens) + a random LM of
 *   Qwen2.5-0.5B's shape (24 layers, d 896, 14 heads / 2 KV heads, FFN 4864, vocabulary 151,936, tied; written to a
 *   temporary folder in bf16), 128 report tokens, batch 4 (BENCH_LLAVA_BATCH), bf16 (variables bf16 when
 *   BENCH_LLAVA_DTYPE=bf16, else f32 variables under bf16 autocast), 128 new tokens.
 *
 * Reported per row: samples/s; tokens/s (the whole sequence: visual + prompt + report tokens for training, new
 * tokens for generation); model FLOPs and their utilisation against BENCH_PEAK_TFLOPS. Model FLOPs (2 per
 * multiply-add; embeddings excluded): the frozen tower's forward (src/bench/flops.ts) + the LM's linear layers and
 * attention scores over the sequence, and its head where it is computed (training: the report tokens; generation:
 * the last prompt position and each new token); training counts the LM twice (forward + gradients of the
 * activations; the frozen weights get none; LoRA's own FLOPs are left out), generation once over the final sequence
 * (KV cache). Peak memory is not measured here
 * (scripts/gpu-check.sh samples nvidia-smi). Writes bench-results/llava.json.
 * Env: BENCH_LLAVA_SHAPE, BENCH_LLAVA_BATCH, BENCH_LLAVA_RUNS (3), BENCH_LLAVA_STAGES (align,lora), BENCH_DEVICE
 * (cpu), BENCH_LLAVA_DTYPE (f32), CXFORMER_THREADS, BENCH_PEAK_TFLOPS.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { threadCount } from '../backbone.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { type VitConfig, presetConfig } from '../model/config.js';
import { resolveModel } from '../model/weights.js';
import { LlavaTrainer, type LlavaBase } from '../llava/native.js';
import { forwardFlops, machineLine, timed } from './flops.js';

/** Qwen2.5-0.5B's config.json shape (random weights). */
const QWEN05B = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rope_theta: 1000000.0,
  rms_norm_eps: 1e-6,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  bos_token_id: 151643,
  eos_token_id: 151643,
  torch_dtype: 'bfloat16',
};

/** A folder with a random LM of `cfg`'s shape (qwen2 names, bf16, N(0, 0.02)-like uniform values, norms 1). */
async function randomQwen2(dir: string, cfg: typeof QWEN05B): Promise<void> {
  await mkdir(dir, { recursive: true });
  let s = 12345;
  const a = 0.02 * Math.sqrt(3);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const rand = (n: number, one = false) => {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      f[0] = one ? 1 : ((s >>> 8) / 2 ** 24 - 0.5) * 2 * a;
      out[i] = u[0]! >>> 16;
    }
    return out;
  };
  const d = cfg.hidden_size;
  const hd = d / cfg.num_attention_heads;
  const kv = cfg.num_key_value_heads * hd;
  const t: Record<string, TensorToWrite> = {};
  const put = (name: string, shape: number[], one = false) => (t[name] = { dtype: 'BF16', shape, data: rand(shape.reduce((x, y) => x * y, 1), one) });
  put('model.embed_tokens.weight', [cfg.vocab_size, d]);
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [d], true);
    put(`${p}.post_attention_layernorm.weight`, [d], true);
    put(`${p}.self_attn.q_proj.weight`, [d, d]);
    put(`${p}.self_attn.q_proj.bias`, [d]);
    put(`${p}.self_attn.k_proj.weight`, [kv, d]);
    put(`${p}.self_attn.k_proj.bias`, [kv]);
    put(`${p}.self_attn.v_proj.weight`, [kv, d]);
    put(`${p}.self_attn.v_proj.bias`, [kv]);
    put(`${p}.self_attn.o_proj.weight`, [d, d]);
    put(`${p}.mlp.gate_proj.weight`, [cfg.intermediate_size, d]);
    put(`${p}.mlp.up_proj.weight`, [cfg.intermediate_size, d]);
    put(`${p}.mlp.down_proj.weight`, [d, cfg.intermediate_size]);
  }
  put('model.norm.weight', [d], true);
  await writeSafetensors(path.join(dir, 'model.safetensors'), t, { format: 'pt' });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
}

/**
 * Forward FLOPs of the LM on one sequence of `T` tokens: linear layers (embeddings excluded) + QKᵀ and AV, and the
 * head at `head` positions (training: the report tokens only, as the loss computes it; generation: one per step).
 */
function lmForwardFlops(c: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; vocab_size: number }, T: number, head = T): number {
  const d = c.hidden_size;
  const kv = (c.num_key_value_heads * d) / c.num_attention_heads;
  const perLayer = d * d * 2 + 2 * d * kv + 3 * d * c.intermediate_size;
  return 2 * T * c.num_hidden_layers * perLayer + 2 * head * d * c.vocab_size + c.num_hidden_layers * 4 * T * T * d;
}

async function main() {
  const shape = (process.env.BENCH_LLAVA_SHAPE ?? 'tiny') as 'tiny' | 'qwen05b';
  const device = process.env.BENCH_DEVICE ?? 'cpu';
  const runs = Number(process.env.BENCH_LLAVA_RUNS ?? 3);
  const stages = (process.env.BENCH_LLAVA_STAGES ?? 'align,lora').split(',');
  const dtype = (process.env.BENCH_LLAVA_DTYPE ?? 'f32') as 'f32' | 'bf16';
  const peak = Number(process.env.BENCH_PEAK_TFLOPS ?? NaN);
  const golden = process.env.CXF_GOLDEN_DIR ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', 'shared', 'fixtures', 'golden');
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'cxf-bench-llava-'));
  try {
    let vision: { config: VitConfig; weights?: string };
    let lm: string;
    let size: number;
    let lmCfg: Parameters<typeof lmForwardFlops>[0];
    let text: number;
    let newTokens: number;
    let B: number;
    if (shape === 'tiny') {
      const r = await resolveModel({ weights: path.join(golden, 'vit_tiny_hf') });
      vision = { config: r.config, weights: r.weights!.file };
      lm = path.join(golden, 'lm', 'qwen2');
      lmCfg = JSON.parse(await readFile(path.join(lm, 'config.json'), 'utf8'));
      size = 112;
      text = 48;
      newTokens = 32;
      B = Number(process.env.BENCH_LLAVA_BATCH ?? 8);
    } else {
      vision = { config: { ...presetConfig('vit_small'), num_register_tokens: 4, img_size: 518 } };
      lm = path.join(tmp, 'qwen05b');
      const t0 = performance.now();
      await randomQwen2(lm, QWEN05B);
      process.stderr.write(`llava bench: random Qwen2.5-0.5B-shaped LM written in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      lmCfg = QWEN05B;
      size = 518;
      text = 128;
      newTokens = 128;
      B = Number(process.env.BENCH_LLAVA_BATCH ?? 4);
    }
    const image = lmCfg.vocab_size; // the appended <image> id: the vocabulary grows by one row
    const base: LlavaBase = { lm, vision, imageTokenIndex: image, featureLayers: [-2], select: 'full' };
    const n = B * 3 * size * size;
    const px = new Float32Array(n);
    let s = 7;
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      px[i] = (s >>> 8) / 2 ** 24 - 0.5;
    }
    const T = 1 + text; // the image token, then the report tokens
    const ids = new Int32Array(B * T);
    const labels = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      ids[b * T] = image;
      labels[b * T] = -100;
      for (let t = 1; t < T; t++) {
        s = (s * 1103515245 + 12345) >>> 0;
        ids[b * T + t] = labels[b * T + t] = 2 + (s % (lmCfg.vocab_size - 2));
      }
    }
    const batch = { pixels: { data: px, shape: [B, 3, size, size] }, inputIds: ids, attentionMask: new Int32Array(B * T).fill(1), labels, shape: [B, T] as [number, number] };
    const time = (f: () => Promise<unknown>) => timed(runs, f);
    const rows: Record<string, unknown>[] = [];
    let visual = 0;
    for (const stage of stages) {
      const train = stage === 'align' ? { stage: 'align' as const, totalSteps: 1000, precision: 'bf16' as const } : { stage: 'finetune' as const, totalSteps: 1000, precision: 'bf16' as const, lora: { rank: 64, alpha: 128, dropout: 0.05 } };
      const tr = await LlavaTrainer.create({ base, train, device, dtype, seed: 0 });
      visual = tr.tokensPerImage(size, size);
      const seq = visual + text;
      const vit = forwardFlops(size, vision.config.embed_dim, vision.config.depth, vision.config.num_register_tokens, vision.config.patch_size);
      const stepS = await time(() => tr.step(batch));
      const trainFlops = B * (vit + 2 * lmForwardFlops(lmCfg, seq, text));
      rows.push({ what: `train ${stage}`, batch: B, median_s: stepS, samples_per_s: B / stepS, tokens_per_s: (B * seq) / stepS, tflops: trainFlops / stepS / 1e12, mfu: Number.isFinite(peak) ? trainFlops / stepS / 1e12 / peak : null, trainable: tr.numTrainable });
      if (stage === stages[0]) {
        const prompt = { pixels: batch.pixels, inputIds: Int32Array.from({ length: B }, () => image), attentionMask: new Int32Array(B).fill(1), shape: [B, 1] as [number, number] };
        const gen = () => tr.generate(prompt, { maxNewTokens: newTokens, eosTokenIds: [] });
        const genS = await time(gen);
        // With the KV cache, generation computes about one forward over the final sequence (the tower once).
        const genFlops = B * (vit + lmForwardFlops(lmCfg, visual + 1 + newTokens, 1 + newTokens));
        rows.push({ what: 'generate greedy', batch: B, median_s: genS, samples_per_s: B / genS, tokens_per_s: (B * newTokens) / genS, tflops: genFlops / genS / 1e12, mfu: Number.isFinite(peak) ? genFlops / genS / 1e12 / peak : null });
      }
    }
    const result = {
      machine: machineLine(),
      threads: threadCount() || os.cpus().length,
      device,
      shape,
      vision: `${vision.config.embed_dim}-wide ViT, ${vision.config.depth} blocks, ${vision.config.num_register_tokens} registers at ${size} px (${visual} visual tokens)${vision.weights ? '' : ', random'}`,
      lm: `${lmCfg.num_hidden_layers} layers, d ${lmCfg.hidden_size}, vocabulary ${lmCfg.vocab_size} (+1 <image>)`,
      dtype,
      reportTokens: text,
      newTokens,
      runs,
      rows,
    };
    await mkdir('bench-results', { recursive: true });
    await writeFile(path.join('bench-results', 'llava.json'), `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${result.machine}; ${result.threads} threads; ${device}; ${result.vision}; LM ${result.lm}; variables ${dtype}; ${text} report tokens, ${newTokens} new tokens; median of ${runs}\n`);
    process.stdout.write('| what | batch | s / call | samples/s | tokens/s | TFLOP/s | MFU |\n|---|---|---|---|---|---|---|\n');
    for (const r of rows) {
      process.stdout.write(`| ${r.what} | ${r.batch} | ${(r.median_s as number).toFixed(3)} | ${(r.samples_per_s as number).toFixed(2)} | ${(r.tokens_per_s as number).toFixed(0)} | ${(r.tflops as number).toFixed(3)} | ${r.mfu === null ? '–' : `${((r.mfu as number) * 100).toFixed(1)} %`} |\n`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
