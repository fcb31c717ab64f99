/**
 * `cxformer info` on a LLaVA folder (transformers' LlavaForConditionalGeneration files, cxformer's or anyone's),
 * without LibTorch: the vision tower, the projector and the LM from config.json and the safetensors headers
 * (model.safetensors or a sharded index), the parameters of each part, the dtypes, the key layout, the visual tokens
 * per image, and cxformer's settings (cxformer-llava.json: stage, prompt, fields; the classifier folder).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { readSafetensorsHeader } from '../io/safetensors.js';
import { CxformerError } from '../native/load.js';
import { LLAVA_MODEL_FILE, readJsonObject } from './folder.js';
import type { LlavaModelJson } from './generate.js';

/** Which part a LLaVA key belongs to (both transformers layouts). */
function partOf(key: string): 'vision' | 'projector' | 'lm' {
  const k = key.replace(/^model\./, '');
  if (k.startsWith('vision_tower.')) return 'vision';
  if (k.startsWith('multi_modal_projector.')) return 'projector';
  return 'lm';
}

export interface LlavaInfo {
  folder: string;
  files: string[];
  layout: 'legacy' | 'nested';
  vision: Record<string, unknown>;
  projector: { kind: string; patchPool: number; shapes: Record<string, number[]> };
  lm: Record<string, unknown>;
  imageTokenIndex: number;
  featureLayer: unknown;
  select: string;
  tokensPerImage: number;
  parameters: { vision: number; projector: number; lm: number; total: number };
  dtypes: Record<string, number>;
  cxformer: Pick<LlavaModelJson, 'stage' | 'prompt' | 'valLoss'> | null;
  classifier: boolean;
}

export async function llavaInfo(dir: string): Promise<LlavaInfo> {
  const cfg = (await readJsonObject(path.join(dir, 'config.json'))) as Record<string, any>;
  const index = path.join(dir, 'model.safetensors.index.json');
  let files = [path.join(dir, 'model.safetensors')];
  if (existsSync(index)) {
    const map = (await readJsonObject(index)).weight_map;
    if (!map || typeof map !== 'object' || Array.isArray(map) || !Object.keys(map).length || !Object.values(map).every((v) => typeof v === 'string')) throw new CxformerError('CXF_INPUT', `${index}: expected "weight_map", a non-empty object of tensor name → shard file name`);
    files = [...new Set(Object.values(map as Record<string, string>))].map((f) => path.join(dir, f));
  }
  const parameters = { vision: 0, projector: 0, lm: 0, total: 0 };
  const dtypes: Record<string, number> = {};
  const shapes: Record<string, number[]> = {};
  let nested = false;
  for (const f of files) {
    if (!existsSync(f)) throw new CxformerError('CXF_INPUT', `${dir}: no ${path.basename(f)} (a LLaVA folder holds model.safetensors or a sharded model.safetensors.index.json)`);
    for (const [k, t] of (await readSafetensorsHeader(f)).tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      parameters[partOf(k)] += n;
      parameters.total += n;
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
      if (k.startsWith('model.') || k.startsWith('lm_head.')) nested = true;
      if (partOf(k) === 'projector') shapes[k.replace(/^model\./, '')] = t.shape;
    }
  }
  const v = cfg.vision_config ?? {};
  const t = cfg.text_config ?? {};
  const pool = Number(cfg.cxformer_patch_pool ?? 1);
  const select = String(cfg.vision_feature_select_strategy ?? 'default');
  const grid = Math.floor(Number(v.image_size) / Number(v.patch_size));
  const pooled = Math.ceil(grid / pool) ** 2;
  const md = existsSync(path.join(dir, LLAVA_MODEL_FILE)) ? ((await readJsonObject(path.join(dir, LLAVA_MODEL_FILE))) as unknown as LlavaModelJson) : null;
  return {
    folder: dir,
    files: files.map((f) => path.basename(f)),
    layout: nested ? 'nested' : 'legacy',
    vision: { model_type: v.model_type, hidden_size: v.hidden_size, num_hidden_layers: v.num_hidden_layers, num_attention_heads: v.num_attention_heads, patch_size: v.patch_size, image_size: v.image_size, num_register_tokens: v.num_register_tokens ?? 0 },
    projector: { kind: String(cfg.cxformer_projector ?? 'mlp2x_gelu'), patchPool: pool, shapes },
    lm: { model_type: t.model_type, hidden_size: t.hidden_size, num_hidden_layers: t.num_hidden_layers ?? t.n_layer, num_attention_heads: t.num_attention_heads ?? t.n_head, num_key_value_heads: t.num_key_value_heads ?? null, vocab_size: t.vocab_size, tie_word_embeddings: t.tie_word_embeddings ?? null },
    imageTokenIndex: Number(cfg.image_token_index ?? cfg.image_token_id),
    featureLayer: cfg.vision_feature_layer ?? -2,
    select,
    tokensPerImage: (select === 'full' ? 1 : 0) + Number(v.num_register_tokens ?? 0) + pooled,
    parameters,
    dtypes,
    cxformer: md ? { stage: md.stage, prompt: md.prompt, valLoss: md.valLoss } : null,
    classifier: existsSync(path.join(dir, 'classifier', 'head.safetensors')),
  };
}

/** The human-readable lines of {@link llavaInfo}. */
export function formatLlavaInfo(i: LlavaInfo, human: (n: number) => string): string[] {
  const v = i.vision;
  const l = i.lm;
  const p = i.cxformer?.prompt;
  return [
    `LLaVA:          ${i.folder} (${i.files.join(', ')}; ${i.layout} key layout)`,
    `  vision tower: ${v.model_type}, D=${v.hidden_size}, depth=${v.num_hidden_layers}, heads=${v.num_attention_heads}, patch ${v.patch_size}, ${v.image_size} px, registers=${v.num_register_tokens}; feature layer ${JSON.stringify(i.featureLayer)}, tokens ${i.select}`,
    `  projector:    ${i.projector.kind}${i.projector.patchPool > 1 ? `, patches pooled ${i.projector.patchPool}×${i.projector.patchPool} (cxformer only)` : ''}`,
    `  LM:           ${l.model_type}, d=${l.hidden_size}, ${l.num_hidden_layers} layers, ${l.num_attention_heads} heads${l.num_key_value_heads ? ` (${l.num_key_value_heads} KV)` : ''}, vocabulary ${l.vocab_size}${l.tie_word_embeddings ? ', tied embeddings' : ''}`,
    `image token:    ${i.imageTokenIndex}, ${i.tokensPerImage} visual tokens per ${v.image_size} px image`,
    `parameters:     vision ${human(i.parameters.vision)}, projector ${human(i.parameters.projector)}, LM ${human(i.parameters.lm)}; total ${human(i.parameters.total)}`,
    `dtypes:         ${Object.entries(i.dtypes).map(([k, n]) => `${k} ${human(n)}`).join(', ')}`,
    ...(i.cxformer && p ? [`cxformer:       stage ${i.cxformer.stage}, prompt ${p.kind}${p.fields?.length ? ` with ${p.fields.join(', ')}` : ''}${i.classifier ? ' (classifier/ kept)' : ''}${i.cxformer.valLoss !== null ? `, validation loss ${i.cxformer.valLoss.toFixed(4)}` : ''}`] : ['cxformer:       no cxformer-llava.json (generate prompts it plainly)']),
  ];
}
