/**
 * Backbone architecture (docs/recipe.md §2): the TypeScript mirror of crates/core `VitConfig` (same snake_case JSON),
 * presets, the Hugging Face config.json mapping, inference from tensor shapes and dotted overrides.
 * Pure TypeScript: `info` and argument checks use it without loading LibTorch.
 */
export type FfnKind = 'mlp' | 'swiglu';

/** Position-embedding interpolation rule (docs/recipe.md §2.3); see crates/core/src/config.rs `PosInterp`. */
export interface PosInterp {
  /** > 0: original DINOv2 scale-factor rule with this offset (0.1); 0: explicit target size. */
  offset: number;
  /** PyTorch's antialiased bicubic (hub register models, HF Dinov2WithRegisters). */
  antialias: boolean;
}

export interface VitConfig {
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  ffn: FfnKind;
  patch_size: number;
  /** Training resolution: the position-embedding grid is img_size / patch_size per side. */
  img_size: number;
  in_chans: number;
  num_register_tokens: number;
  /** LayerScale init value; null = no LayerScale. */
  layerscale_init: number | null;
  layer_norm_eps: number;
  qkv_bias: boolean;
  proj_bias: boolean;
  ffn_bias: boolean;
  drop_path_rate: number;
  drop_path_uniform: boolean;
  use_mask_token: boolean;
  interpolation: PosInterp;
}

export const INTERP_ORIGINAL: PosInterp = { offset: 0.1, antialias: false };
export const INTERP_REGISTERS_AA: PosInterp = { offset: 0, antialias: true };
export const INTERP_HF_SIZE: PosInterp = { offset: 0, antialias: false };

/** Thrown for an invalid architecture, override or config file; names the key, what was expected and found. */
export class ConfigError extends Error {
  readonly code = 'CXF_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function preset(embed_dim: number, depth: number, num_heads: number, ffn: FfnKind): VitConfig {
  return {
    embed_dim,
    depth,
    num_heads,
    mlp_ratio: 4,
    ffn,
    patch_size: 14,
    img_size: 518,
    in_chans: 3,
    num_register_tokens: 4,
    layerscale_init: 1,
    layer_norm_eps: 1e-6,
    qkv_bias: true,
    proj_bias: true,
    ffn_bias: true,
    drop_path_rate: 0,
    drop_path_uniform: true,
    use_mask_token: true,
    interpolation: { ...INTERP_REGISTERS_AA },
  };
}

/** Presets (p14, 518 px, 4 registers like CXformer; override `model.num_register_tokens=0` for none). */
export const PRESETS = {
  vit_small: () => preset(384, 12, 6, 'mlp'),
  vit_base: () => preset(768, 12, 12, 'mlp'),
  vit_large: () => preset(1024, 24, 16, 'mlp'),
  vit_giant2: () => preset(1536, 40, 24, 'swiglu'),
} as const;
export type PresetName = keyof typeof PRESETS;

export function presetConfig(name: string): VitConfig {
  const make = (PRESETS as Record<string, () => VitConfig>)[name];
  if (!make) {
    throw new ConfigError(`unknown architecture '${name}': expected one of ${Object.keys(PRESETS).join(', ')}`);
  }
  return make();
}

/** FFN hidden width (SwiGLU: ((int(int(D·r)·2/3) + 7) // 8) · 8). */
export function ffnHidden(c: VitConfig): number {
  const h = Math.trunc(c.embed_dim * c.mlp_ratio);
  return c.ffn === 'mlp' ? h : Math.floor((Math.trunc((h * 2) / 3) + 7) / 8) * 8;
}

/** Parameter count of the backbone (matches crates/core `VitConfig::num_params`). */
export function numParams(c: VitConfig): number {
  const d = c.embed_dim;
  const m = c.img_size / c.patch_size;
  const h = ffnHidden(c);
  let n = d + (1 + m * m) * d + c.num_register_tokens * d + (c.use_mask_token ? d : 0);
  n += d * c.in_chans * c.patch_size * c.patch_size + d;
  const ffn = c.ffn === 'mlp' ? d * h + h + h * d + d : d * 2 * h + 2 * h + h * d + d;
  const block = 4 * d + 3 * d * d + (c.qkv_bias ? 3 * d : 0) + d * d + d + ffn + (c.layerscale_init !== null ? 2 * d : 0);
  return n + c.depth * block + 2 * d;
}

export function validateConfig(c: VitConfig, source: string): VitConfig {
  const fail = (m: string): never => {
    throw new ConfigError(`${source}: ${m}`);
  };
  const posInt = (k: keyof VitConfig) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(`model.${k} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  (['embed_dim', 'depth', 'num_heads', 'patch_size', 'img_size', 'in_chans'] as const).forEach(posInt);
  if (c.embed_dim % c.num_heads !== 0) fail(`model.embed_dim ${c.embed_dim} is not divisible by model.num_heads ${c.num_heads}`);
  if (c.img_size % c.patch_size !== 0) fail(`model.img_size ${c.img_size} must be a multiple of model.patch_size ${c.patch_size}`);
  if (!Number.isInteger(c.num_register_tokens) || c.num_register_tokens < 0) {
    fail(`model.num_register_tokens must be an integer >= 0, got ${JSON.stringify(c.num_register_tokens)}`);
  }
  if (c.ffn !== 'mlp' && c.ffn !== 'swiglu') fail(`model.ffn must be 'mlp' or 'swiglu', got ${JSON.stringify(c.ffn)}`);
  if (!(c.mlp_ratio > 0)) fail(`model.mlp_ratio must be > 0, got ${JSON.stringify(c.mlp_ratio)}`);
  if (!(c.drop_path_rate >= 0 && c.drop_path_rate < 1)) fail(`model.drop_path_rate must be in [0, 1), got ${c.drop_path_rate}`);
  if (!(c.interpolation?.offset >= 0)) fail(`model.interpolation.offset must be >= 0`);
  return c;
}

/** Maps a Hugging Face config.json (model_type dinov2 / dinov2_with_registers) to a VitConfig. */
export function fromHfConfig(json: Record<string, unknown>, source: string): VitConfig {
  const type = json.model_type;
  if (type !== 'dinov2' && type !== 'dinov2_with_registers') {
    throw new ConfigError(`${source}: expected model_type "dinov2" or "dinov2_with_registers", found ${JSON.stringify(type)}`);
  }
  const reg = type === 'dinov2_with_registers';
  const num = (k: string, d: number) => (typeof json[k] === 'number' ? (json[k] as number) : d);
  const bool = (k: string, d: boolean) => (typeof json[k] === 'boolean' ? (json[k] as boolean) : d);
  const swiglu = bool('use_swiglu_ffn', false);
  const act = json.hidden_act ?? 'gelu';
  if (!swiglu && act !== 'gelu') throw new ConfigError(`${source}: hidden_act ${JSON.stringify(act)} is not supported (expected "gelu")`);
  return validateConfig(
    {
      embed_dim: num('hidden_size', 768),
      depth: num('num_hidden_layers', 12),
      num_heads: num('num_attention_heads', 12),
      mlp_ratio: num('mlp_ratio', 4),
      ffn: swiglu ? 'swiglu' : 'mlp',
      patch_size: num('patch_size', 14),
      img_size: num('image_size', 518),
      in_chans: num('num_channels', 3),
      num_register_tokens: reg ? num('num_register_tokens', 4) : 0,
      layerscale_init: num('layerscale_value', 1),
      layer_norm_eps: num('layer_norm_eps', 1e-6),
      qkv_bias: bool('qkv_bias', true),
      proj_bias: true,
      ffn_bias: true,
      drop_path_rate: num('drop_path_rate', 0),
      drop_path_uniform: true,
      use_mask_token: reg ? true : bool('use_mask_token', true),
      interpolation: reg ? { ...INTERP_REGISTERS_AA } : { ...INTERP_HF_SIZE },
    },
    source,
  );
}

/** The HF config.json written by `export` (Dinov2Model or Dinov2WithRegistersModel). */
export function toHfConfig(c: VitConfig): Record<string, unknown> {
  const reg = c.num_register_tokens > 0;
  const stages = ['stem', ...Array.from({ length: c.depth }, (_, i) => `stage${i + 1}`)];
  return {
    architectures: [reg ? 'Dinov2WithRegistersModel' : 'Dinov2Model'],
    model_type: reg ? 'dinov2_with_registers' : 'dinov2',
    hidden_size: c.embed_dim,
    num_hidden_layers: c.depth,
    num_attention_heads: c.num_heads,
    mlp_ratio: c.mlp_ratio,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    initializer_range: 0.02,
    layer_norm_eps: c.layer_norm_eps,
    image_size: c.img_size,
    patch_size: c.patch_size,
    num_channels: c.in_chans,
    qkv_bias: c.qkv_bias,
    layerscale_value: c.layerscale_init ?? 1,
    drop_path_rate: c.drop_path_rate,
    use_swiglu_ffn: c.ffn === 'swiglu',
    ...(reg ? { num_register_tokens: c.num_register_tokens } : { use_mask_token: c.use_mask_token }),
    out_features: [stages[stages.length - 1]],
    out_indices: [c.depth],
    stage_names: stages,
    apply_layernorm: true,
    reshape_hidden_states: true,
    torch_dtype: 'float32',
  };
}

/**
 * Applies dotted overrides (`model.num_heads=3`, `model.interpolation.offset=0.1`; the `model.` prefix is
 * optional) to a copy of `c`. Values are parsed as JSON when they can be (numbers, booleans, null), else kept
 * as strings. Unknown keys are refused with the list of known ones.
 */
export function applyOverrides(c: VitConfig, overrides: readonly string[]): VitConfig {
  const out = structuredClone(c) as unknown as Record<string, unknown>;
  for (const o of overrides) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new ConfigError(`override '${o}': expected key=value, e.g. model.num_heads=6`);
    const key = o.slice(0, eq).replace(/^model\./, '');
    const raw = o.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* plain string */
    }
    const parts = key.split('.');
    let node: Record<string, unknown> = out;
    for (const [i, p] of parts.entries()) {
      if (!(p in node)) {
        const known = Object.keys(node).map((k) => (i === 0 ? `model.${k}` : k));
        throw new ConfigError(`override '${o}': unknown key '${p}'; known keys: ${known.join(', ')}`);
      }
      if (i === parts.length - 1) {
        const old = node[p];
        const okType = old === null || value === null || typeof old === typeof value;
        if (!okType) throw new ConfigError(`override '${o}': expected a ${typeof old} for model.${key}, got ${JSON.stringify(value)}`);
        node[p] = value;
      } else {
        node = node[p] as Record<string, unknown>;
        if (typeof node !== 'object' || node === null) throw new ConfigError(`override '${o}': model.${parts.slice(0, i + 1).join('.')} is not an object`);
      }
    }
  }
  return validateConfig(out as unknown as VitConfig, 'overrides');
}
