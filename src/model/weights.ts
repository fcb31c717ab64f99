/**
 * Finding weights and their architecture without LibTorch: a folder (HF layout: config.json,
 * model.safetensors, preprocessor_config.json) or a .safetensors file; key-layout detection (docs/recipe.md §2.7) and
 * architecture inference from tensor shapes, for `info` and to build the model `embed` loads into.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensorsHeader, type SafetensorsHeader } from '../io/safetensors.js';
import { readHfPreprocessorConfig } from '../image/hf-config.js';
import type { PreprocessOptions } from '../image/options.js';
import {
  applyOverrides,
  ConfigError,
  fromHfConfig,
  INTERP_HF_SIZE,
  INTERP_ORIGINAL,
  INTERP_REGISTERS_AA,
  presetConfig,
  validateConfig,
  type VitConfig,
} from './config.js';

/** Key layout of a weight file: HF names or original DINOv2 names, after stripping `prefix`. */
export interface Layout {
  kind: 'hf' | 'original';
  prefix: string;
}

export function detectLayout(names: readonly string[]): Layout | null {
  const has = (p: string) => names.some((n) => n.startsWith(p));
  for (const prefix of ['', 'dinov2.', 'dinov2_with_registers.']) {
    if (has(`${prefix}embeddings.`) && has(`${prefix}encoder.layer.`)) return { kind: 'hf', prefix };
  }
  for (const prefix of ['', 'backbone.', 'teacher.backbone.', 'student.backbone.']) {
    if (has(`${prefix}blocks.`) && has(`${prefix}patch_embed.`)) return { kind: 'original', prefix };
  }
  return null;
}

export function describeLayout(l: Layout): string {
  const base = l.kind === 'hf' ? 'Hugging Face Dinov2 names' : 'original DINOv2 names (fused qkv)';
  return l.prefix ? `${base}, prefix '${l.prefix}'` : base;
}

/** Where the weights and their companion files are. */
export interface WeightsLocation {
  /** The .safetensors file. */
  file: string;
  /** HF config.json beside it, if any. */
  configJson: string | null;
  /** HF preprocessor_config.json beside it, if any. */
  preprocessorJson: string | null;
}

/**
 * Resolves `--weights`: a folder (model.safetensors, or its only *.safetensors file) or a .safetensors file.
 * Refuses other formats (.pth, .bin, .ckpt): only safetensors are read as weights.
 */
export function locateWeights(spec: string): WeightsLocation {
  const p = path.resolve(spec);
  if (!existsSync(p)) throw new ConfigError(`--weights ${spec}: no such file or folder`);
  let file = p;
  if (statSync(p).isDirectory()) {
    const st = readdirSync(p).filter((f) => f.endsWith('.safetensors'));
    const pick = st.includes('model.safetensors') ? 'model.safetensors' : st.length === 1 ? st[0] : undefined;
    if (!pick) {
      throw new ConfigError(
        `--weights ${spec}: expected a folder with model.safetensors (Hugging Face layout) or exactly one .safetensors file, found ${
          st.length ? st.join(', ') : 'none'
        }`,
      );
    }
    file = path.join(p, pick);
  } else if (!p.endsWith('.safetensors')) {
    throw new ConfigError(
      `--weights ${spec}: expected a .safetensors file or a Hugging Face model folder; only safetensors are read as weights ` +
        `(convert .pth/.bin checkpoints with safetensors' own tools first)`,
    );
  }
  const dir = path.dirname(file);
  const opt = (n: string) => (existsSync(path.join(dir, n)) ? path.join(dir, n) : null);
  return { file, configJson: opt('config.json'), preprocessorJson: opt('preprocessor_config.json') };
}

/** Infers the architecture from tensor shapes (used when there is no config.json and no cxformer metadata). */
export function inferConfig(header: SafetensorsHeader, layout: Layout): VitConfig {
  const names = [...header.tensors.keys()];
  const hf = layout.kind === 'hf';
  const key = (orig: string, hfName: string) => layout.prefix + (hf ? hfName : orig);
  const shape = (orig: string, hfName: string): number[] | undefined => header.tensors.get(key(orig, hfName))?.shape;
  const need = (orig: string, hfName: string): number[] => {
    const s = shape(orig, hfName);
    if (!s) throw new ConfigError(`${header.path}: cannot infer the architecture: tensor '${key(orig, hfName)}' is missing`);
    return s;
  };
  const cls = need('cls_token', 'embeddings.cls_token');
  const d = cls[2] ?? 0;
  const pos = need('pos_embed', 'embeddings.position_embeddings');
  const m = Math.round(Math.sqrt((pos[1] ?? 1) - 1));
  const pw = need('patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight');
  const blockRe = new RegExp(`^${(layout.prefix + (hf ? 'encoder.layer.' : 'blocks.')).replace(/\./g, '\\.')}(\\d+)\\.`);
  const depth = 1 + Math.max(-1, ...names.map((n) => Number(blockRe.exec(n)?.[1] ?? -1)));
  const swiglu = shape('blocks.0.mlp.w12.weight', 'encoder.layer.0.mlp.weights_in.weight');
  const fc1 = shape('blocks.0.mlp.fc1.weight', 'encoder.layer.0.mlp.fc1.weight');
  const ls = shape('blocks.0.ls1.gamma', 'encoder.layer.0.layer_scale1.lambda1');
  const reg = shape('register_tokens', 'embeddings.register_tokens');
  const qkvBias = shape('blocks.0.attn.qkv.bias', 'encoder.layer.0.attention.attention.query.bias');
  const hidden = swiglu ? (swiglu[0] ?? 0) / 2 : (fc1?.[0] ?? 4 * d);
  // SwiGLU hidden h' = ((int(4D·2/3)+7)//8)·8 corresponds to mlp_ratio 4 for the DINOv2 presets.
  const mlpRatio = swiglu ? 4 : hidden / d;
  const registers = reg?.[1] ?? 0;
  const cfg: VitConfig = {
    embed_dim: d,
    depth,
    // Not recoverable from shapes: every DINOv2 preset uses 64-dim heads. Override with model.num_heads=N.
    num_heads: Math.max(1, Math.round(d / 64)),
    mlp_ratio: mlpRatio,
    ffn: swiglu ? 'swiglu' : 'mlp',
    patch_size: pw[2] ?? 14,
    img_size: m * (pw[2] ?? 14),
    in_chans: pw[1] ?? 3,
    num_register_tokens: registers,
    layerscale_init: ls ? 1 : null,
    layer_norm_eps: 1e-6,
    qkv_bias: !!qkvBias,
    proj_bias: true,
    ffn_bias: true,
    drop_path_rate: 0,
    drop_path_uniform: true,
    use_mask_token: !!shape('mask_token', 'embeddings.mask_token'),
    // Original names: DINOv2 code (offset 0.1) or torch-hub register models (antialiased);
    // HF names without config.json: the HF class implied by the presence of registers.
    interpolation: registers > 0 ? { ...INTERP_REGISTERS_AA } : hf ? { ...INTERP_HF_SIZE } : { ...INTERP_ORIGINAL },
  };
  return validateConfig(cfg, `${header.path} (inferred from tensor shapes)`);
}

/** A resolved model description: enough to build it natively or to print `info`. */
export interface ResolvedModel {
  config: VitConfig;
  /** Where the architecture came from (config.json path, "safetensors metadata", "shapes", "preset vit_small"). */
  configSource: string;
  /** null for a random-initialised model. */
  weights: WeightsLocation | null;
  header: SafetensorsHeader | null;
  layout: Layout | null;
  /** Preprocessing from preprocessor_config.json, when present. */
  preprocess: PreprocessOptions | null;
}

export interface ResolveOptions {
  /** Folder or .safetensors file; omitted = random initialisation of `arch`. */
  weights?: string;
  /** Preset name (vit_small, vit_base, vit_large, vit_giant2): replaces config.json/metadata/inference. */
  arch?: string;
  /** Dotted overrides, e.g. ["model.num_heads=3"]. */
  overrides?: readonly string[];
}

/** Resolves the architecture: --arch, else config.json, else cxformer metadata, else shapes; then overrides. */
export async function resolveModel(o: ResolveOptions): Promise<ResolvedModel> {
  if (!o.weights) {
    if (!o.arch) throw new ConfigError('no weights given: pass --weights <folder|file.safetensors>, or --arch <preset> for a random-initialised model');
    return {
      config: applyOverrides(presetConfig(o.arch), o.overrides ?? []),
      configSource: `preset ${o.arch} (random initialisation)`,
      weights: null,
      header: null,
      layout: null,
      preprocess: null,
    };
  }
  const loc = locateWeights(o.weights);
  const header = await readSafetensorsHeader(loc.file);
  const layout = detectLayout([...header.tensors.keys()]);
  if (!layout) {
    const some = [...header.tensors.keys()].slice(0, 5).join(', ');
    throw new ConfigError(
      `${loc.file}: unrecognised key layout: expected Hugging Face Dinov2 names (embeddings.*, encoder.layer.N.*) or original DINOv2 names (blocks.N.*, patch_embed.*); found ${some || 'no tensors'}`,
    );
  }
  let config: VitConfig;
  let configSource: string;
  if (o.arch) {
    config = presetConfig(o.arch);
    configSource = `preset ${o.arch}`;
  } else if (loc.configJson) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await readFile(loc.configJson, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${loc.configJson}: not valid JSON (${(e as Error).message})`);
    }
    config = fromHfConfig(json, loc.configJson);
    configSource = loc.configJson;
  } else if (header.metadata?.cxformer_config) {
    try {
      config = validateConfig(JSON.parse(header.metadata.cxformer_config) as VitConfig, `${loc.file} metadata cxformer_config`);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(`${loc.file}: metadata cxformer_config is not valid JSON`);
    }
    configSource = `${loc.file} (cxformer metadata)`;
  } else {
    config = inferConfig(header, layout);
    configSource = `${loc.file} (inferred from tensor shapes; heads assumed 64-dim)`;
  }
  config = applyOverrides(config, o.overrides ?? []);
  const preprocess = loc.preprocessorJson ? await readHfPreprocessorConfig(loc.preprocessorJson) : null;
  return { config, configSource, weights: loc, header, layout, preprocess };
}
