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
  expectedShapes,
  fromHfConfig,
  INTERP_HF_SIZE,
  INTERP_ORIGINAL,
  INTERP_REGISTERS_AA,
  presetConfig,
  validateConfig,
  type PosInterp,
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

/** Prefixes of the checkpoints DINOv2's / CXformer's training code writes (`teacher.backbone.…`). */
const TRAINING_PREFIXES = new Set(['backbone.', 'teacher.backbone.', 'student.backbone.']);

/**
 * The position-embedding interpolation rule (docs/recipe.md §2.3) a file of this layout was made with, when the file
 * does not say: the DINOv2 training code's (scale factor, offset 0.1, no antialias) for original names without
 * registers and for every training-code checkpoint (`backbone.` / `teacher.backbone.` prefixes, registers or not);
 * torch hub's (explicit size, antialiased) for bare original names with registers; the HF class's otherwise.
 */
export function defaultInterpolation(layout: Layout, registers: number): PosInterp {
  if (layout.kind === 'original') {
    if (TRAINING_PREFIXES.has(layout.prefix) || registers === 0) return { ...INTERP_ORIGINAL };
    return { ...INTERP_REGISTERS_AA };
  }
  return registers > 0 ? { ...INTERP_REGISTERS_AA } : { ...INTERP_HF_SIZE };
}

/** One line naming an interpolation rule, for `info` and embed's log. */
export function describeInterpolation(ip: PosInterp): string {
  const kind = ip.offset > 0 ? `scale factor with offset ${ip.offset} (DINOv2 training code)` : 'explicit size';
  const family =
    ip.offset > 0 ? '' : ip.antialias ? ' (torch hub register models, HF Dinov2WithRegisters)' : ' (HF Dinov2Model)';
  return `${kind}, bicubic${ip.antialias ? ' antialiased' : ''}${family}`;
}

/** Thrown when a weight file does not match the architecture; code CXF_WEIGHTS (exit 2). */
export class WeightsError extends Error {
  readonly code = 'CXF_WEIGHTS';
  constructor(message: string) {
    super(message);
    this.name = 'WeightsError';
  }
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/** Keys outside the backbone that a file of this layout may carry and that are skipped on purpose (as in the core). */
function isIgnorable(layout: Layout, name: string): boolean {
  if (layout.kind === 'hf') return layout.prefix !== '' && name.startsWith('classifier.');
  if (layout.prefix === 'teacher.backbone.' || layout.prefix === 'student.backbone.') return true;
  const root = layout.prefix.endsWith('backbone.') ? layout.prefix.slice(0, -'backbone.'.length) : '';
  return layout.prefix !== '' && (name.startsWith(`${root}dino_head.`) || name.startsWith(`${root}ibot_head.`));
}

/** An HF key (prefix stripped) → its original name, or for query/key/value the fused name and the part 0/1/2. */
function hfToOriginal(name: string): { name: string; part?: number } | null {
  const direct: Record<string, string> = {
    'embeddings.cls_token': 'cls_token',
    'embeddings.mask_token': 'mask_token',
    'embeddings.position_embeddings': 'pos_embed',
    'embeddings.register_tokens': 'register_tokens',
  };
  if (direct[name]) return { name: direct[name] };
  if (name.startsWith('embeddings.patch_embeddings.projection.')) return { name: `patch_embed.proj.${name.slice(39)}` };
  if (name.startsWith('layernorm.')) return { name: `norm.${name.slice(10)}` };
  const m = /^encoder\.layer\.(\d+)\.(.+)$/.exec(name);
  if (!m) return null;
  const [, i, rest] = m as unknown as [string, string, string];
  const qkv = /^attention\.attention\.(query|key|value)\.(.+)$/.exec(rest);
  if (qkv) return { name: `blocks.${i}.attn.qkv.${qkv[2]}`, part: ['query', 'key', 'value'].indexOf(qkv[1] as string) };
  const pairs: [string, string][] = [
    ['attention.output.dense.', 'attn.proj.'],
    ['layer_scale1.lambda1', 'ls1.gamma'],
    ['layer_scale2.lambda1', 'ls2.gamma'],
    ['norm1.', 'norm1.'],
    ['norm2.', 'norm2.'],
    ['mlp.fc1.', 'mlp.fc1.'],
    ['mlp.fc2.', 'mlp.fc2.'],
    ['mlp.weights_in.', 'mlp.w12.'],
    ['mlp.weights_out.', 'mlp.w3.'],
  ];
  for (const [hf, orig] of pairs) if (rest.startsWith(hf)) return { name: `blocks.${i}.${orig}${rest.slice(hf.length)}` };
  return null;
}

/** An original name (not qkv) → its HF name (docs/recipe.md §2.7 table). */
function originalToHf(orig: string): string {
  const direct: Record<string, string> = {
    cls_token: 'embeddings.cls_token',
    mask_token: 'embeddings.mask_token',
    pos_embed: 'embeddings.position_embeddings',
    register_tokens: 'embeddings.register_tokens',
  };
  if (direct[orig]) return direct[orig];
  if (orig.startsWith('patch_embed.proj.')) return `embeddings.patch_embeddings.projection.${orig.slice(17)}`;
  if (orig.startsWith('norm.')) return `layernorm.${orig.slice(5)}`;
  const m = /^blocks\.(\d+)\.(.+)$/.exec(orig);
  if (!m) return orig;
  const rest = (m[2] as string)
    .replace(/^attn\.proj\./, 'attention.output.dense.')
    .replace(/^ls1\.gamma$/, 'layer_scale1.lambda1')
    .replace(/^ls2\.gamma$/, 'layer_scale2.lambda1')
    .replace(/^mlp\.w12\./, 'mlp.weights_in.')
    .replace(/^mlp\.w3\./, 'mlp.weights_out.');
  return `encoder.layer.${m[1]}.${rest}`;
}

function listSome(items: readonly string[], max = 12): string {
  const head = items.slice(0, max).join(', ');
  return items.length > max ? `${head}, … (${items.length - max} more)` : head;
}

/**
 * Checks a header against an architecture without reading tensor data: every backbone tensor present once with the
 * expected shape (query/key/value each a third of the fused qkv), nothing unexpected, floating-point dtypes. The one
 * validator behind `info`, `embed`, `export` and the library's loadBackbone (the core repeats it before allocating).
 * @throws WeightsError listing the missing, unexpected and mismatched tensors.
 */
export function checkWeights(header: SafetensorsHeader, layout: Layout, config: VitConfig): void {
  const expect = expectedShapes(config);
  const hf = layout.kind === 'hf';
  const found = new Map<string, { file: string; shape: number[] }[]>();
  const missing: string[] = [];
  const unexpected: string[] = [];
  const mismatched: string[] = [];
  for (const [name, info] of header.tensors) {
    if (!name.startsWith(layout.prefix)) {
      if (!isIgnorable(layout, name)) unexpected.push(name);
      continue;
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new WeightsError(`${header.path}: tensor '${name}' has dtype ${info.dtype}; expected a floating-point dtype (F32, BF16, F16, F64)`);
    }
    const stripped = name.slice(layout.prefix.length);
    const t = hf ? hfToOriginal(stripped) : { name: stripped };
    if (!t) {
      unexpected.push(name);
      continue;
    }
    const parts = found.get(t.name) ?? [];
    parts[t.part ?? 0] = { file: name, shape: info.shape };
    found.set(t.name, parts);
  }
  const shown = (orig: string, part?: number): string => {
    if (!hf) return layout.prefix + orig;
    const qkv = /^blocks\.(\d+)\.attn\.qkv\.(.+)$/.exec(orig);
    if (qkv) {
      const which = part === undefined ? ['query', 'key', 'value'] : [['query', 'key', 'value'][part]];
      return which.map((w) => `${layout.prefix}encoder.layer.${qkv[1]}.attention.attention.${w}.${qkv[2]}`).join('|');
    }
    return layout.prefix + originalToHf(orig);
  };
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  for (const [orig, want] of expect) {
    const got = found.get(orig);
    const isQkv = hf && /\.attn\.qkv\./.test(orig);
    if (!got) {
      missing.push(shown(orig));
      continue;
    }
    if (isQkv) {
      const part = [want[0]! / 3, ...want.slice(1)];
      for (let p = 0; p < 3; p++) {
        const g = got[p];
        if (!g) missing.push(shown(orig, p));
        else if (!same(g.shape, part)) mismatched.push(`${g.file} (file [${g.shape.join(', ')}], model [${part.join(', ')}])`);
      }
    } else {
      const g = got[0]!;
      if (!same(g.shape, want)) mismatched.push(`${g.file} (file [${g.shape.join(', ')}], model [${want.join(', ')}])`);
    }
  }
  for (const [orig, parts] of found) if (!expect.has(orig)) for (const p of parts) if (p) unexpected.push(p.file);
  if (missing.length || unexpected.length || mismatched.length) {
    const lines = [`${header.path}: weights do not match the model architecture; nothing was loaded.`];
    if (missing.length) lines.push(`  missing (${missing.length}): ${listSome(missing)}`);
    if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${listSome(unexpected)}`);
    if (mismatched.length) lines.push(`  shape mismatch (${mismatched.length}): ${listSome(mismatched)}`);
    lines.push('  Check the architecture (config.json, --arch or model.* overrides) against the file.');
    throw new WeightsError(lines.join('\n'));
  }
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
    interpolation: defaultInterpolation(layout, registers),
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
  /** The position-embedding interpolation rule and why it was chosen, for `info` and embed's log. */
  interpolation: string;
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
    const config = applyOverrides(presetConfig(o.arch), o.overrides ?? []);
    return {
      config,
      configSource: `preset ${o.arch} (random initialisation)`,
      weights: null,
      header: null,
      layout: null,
      preprocess: null,
      interpolation: `${describeInterpolation(config.interpolation)}; chosen from preset ${o.arch}`,
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
  let interpWhy: string;
  if (o.arch) {
    config = presetConfig(o.arch);
    configSource = `preset ${o.arch}`;
    interpWhy = `preset ${o.arch}`;
    if (TRAINING_PREFIXES.has(layout.prefix)) {
      config.interpolation = defaultInterpolation(layout, config.num_register_tokens);
      interpWhy = `a training-code checkpoint ('${layout.prefix}' keys)`;
    }
  } else if (loc.configJson) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await readFile(loc.configJson, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${loc.configJson}: not valid JSON (${(e as Error).message})`);
    }
    config = fromHfConfig(json, loc.configJson);
    configSource = loc.configJson;
    interpWhy = `the model_type of ${path.basename(loc.configJson)}`;
  } else if (header.metadata?.cxformer_config) {
    try {
      config = validateConfig(JSON.parse(header.metadata.cxformer_config) as VitConfig, `${loc.file} metadata cxformer_config`);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(`${loc.file}: metadata cxformer_config is not valid JSON`);
    }
    configSource = `${loc.file} (cxformer metadata)`;
    interpWhy = 'the cxformer metadata';
  } else {
    config = inferConfig(header, layout);
    configSource = `${loc.file} (inferred from tensor shapes; heads assumed 64-dim)`;
    interpWhy = TRAINING_PREFIXES.has(layout.prefix)
      ? `a training-code checkpoint ('${layout.prefix}' keys)`
      : layout.kind === 'original'
        ? `original DINOv2 names ${config.num_register_tokens > 0 ? 'with registers (torch hub)' : 'without registers'}`
        : `HF names ${config.num_register_tokens > 0 ? 'with' : 'without'} registers`;
  }
  config = applyOverrides(config, o.overrides ?? []);
  if ((o.overrides ?? []).some((x) => /^(model\.)?interpolation\./.test(x))) interpWhy = 'the overrides';
  checkWeights(header, layout, config);
  const preprocess = loc.preprocessorJson ? await readHfPreprocessorConfig(loc.preprocessorJson) : null;
  const interpolation = `${describeInterpolation(config.interpolation)}; chosen from ${interpWhy}`;
  return { config, configSource, weights: loc, header, layout, preprocess, interpolation };
}
