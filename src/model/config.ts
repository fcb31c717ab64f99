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

/**
 * Shape of every backbone variable in original DINOv2 names, computed from the architecture alone (mirrors
 * crates/core `VitConfig::expected_shapes`): what a weight file is checked against before anything is allocated.
 */
export function expectedShapes(c: VitConfig): Map<string, number[]> {
  const d = c.embed_dim;
  const m = c.img_size / c.patch_size;
  const h = ffnHidden(c);
  const s = new Map<string, number[]>();
  s.set('cls_token', [1, 1, d]);
  s.set('pos_embed', [1, 1 + m * m, d]);
  if (c.num_register_tokens > 0) s.set('register_tokens', [1, c.num_register_tokens, d]);
  if (c.use_mask_token) s.set('mask_token', [1, d]);
  s.set('patch_embed.proj.weight', [d, c.in_chans, c.patch_size, c.patch_size]);
  s.set('patch_embed.proj.bias', [d]);
  const [fcIn, fcOut, width] = c.ffn === 'mlp' ? ['mlp.fc1', 'mlp.fc2', h] : ['mlp.w12', 'mlp.w3', 2 * h];
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}.`;
    for (const n of ['norm1', 'norm2']) {
      s.set(`${b}${n}.weight`, [d]);
      s.set(`${b}${n}.bias`, [d]);
    }
    s.set(`${b}attn.qkv.weight`, [3 * d, d]);
    if (c.qkv_bias) s.set(`${b}attn.qkv.bias`, [3 * d]);
    s.set(`${b}attn.proj.weight`, [d, d]);
    if (c.proj_bias) s.set(`${b}attn.proj.bias`, [d]);
    if (c.layerscale_init !== null) {
      s.set(`${b}ls1.gamma`, [d]);
      s.set(`${b}ls2.gamma`, [d]);
    }
    s.set(`${b}${fcIn}.weight`, [width, d]);
    s.set(`${b}${fcOut}.weight`, [d, h]);
    if (c.ffn_bias) {
      s.set(`${b}${fcIn}.bias`, [width]);
      s.set(`${b}${fcOut}.bias`, [d]);
    }
  }
  s.set('norm.weight', [d]);
  s.set('norm.bias', [d]);
  return s;
}

/**
 * Upper bounds for values that tensor shapes cannot confirm (or, for a random-initialised model, nothing confirms).
 * Generous for real ViTs (ViT-g/14 is 1536 wide, 40 deep; CXformer trains at 518 px) and far below what would exhaust
 * memory before a clear error could be given. Mirrored in crates/core/src/config.rs `VitConfig::validate`.
 */
export const ARCH_LIMITS = {
  embed_dim: 16384,
  depth: 512,
  patch_size: 256,
  img_size: 16384,
  /** Position-grid cells (img_size / patch_size)²: 37² at 518 px; 4096 px at p14 is 292². */
  pos_cells: 100_000,
  in_chans: 64,
  num_register_tokens: 1024,
  mlp_ratio: 64,
  /** float32 parameters (16 GB). ViT-g/14 has 1.1 B. */
  parameters: 4e9,
  layer_norm_eps_max: 0.1,
  layerscale_abs_max: 1e6,
} as const;

/**
 * Checks every field of `c` for type, range and consistency and returns it; the message names the key, what was
 * expected and what was found, prefixed by `source` (the file or "overrides").
 */
export function validateConfig(c: VitConfig, source: string): VitConfig {
  const fail = (m: string): never => {
    throw new ConfigError(`${source}: ${m}`);
  };
  if (c === null || typeof c !== 'object' || Array.isArray(c)) fail(`expected an architecture object, found ${JSON.stringify(c)}`);
  const L = ARCH_LIMITS;
  const int = (k: keyof VitConfig, lo: number, hi: number) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      fail(`model.${k} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    }
  };
  const bool = (k: keyof VitConfig) => {
    if (typeof c[k] !== 'boolean') fail(`model.${k} must be true or false, got ${JSON.stringify(c[k])}`);
  };
  int('embed_dim', 1, L.embed_dim);
  int('depth', 1, L.depth);
  int('num_heads', 1, c.embed_dim);
  int('patch_size', 1, L.patch_size);
  int('img_size', 1, L.img_size);
  int('in_chans', 1, L.in_chans);
  int('num_register_tokens', 0, L.num_register_tokens);
  if (c.embed_dim % c.num_heads !== 0) fail(`model.embed_dim ${c.embed_dim} is not divisible by model.num_heads ${c.num_heads}`);
  if (c.img_size % c.patch_size !== 0) fail(`model.img_size ${c.img_size} must be a multiple of model.patch_size ${c.patch_size}`);
  if ((c.img_size / c.patch_size) ** 2 > L.pos_cells) {
    fail(`model.img_size / model.patch_size = ${c.img_size / c.patch_size}: at most ${Math.floor(Math.sqrt(L.pos_cells))} position cells per side, got ${c.img_size}/${c.patch_size}`);
  }
  if (c.ffn !== 'mlp' && c.ffn !== 'swiglu') fail(`model.ffn must be 'mlp' or 'swiglu', got ${JSON.stringify(c.ffn)}`);
  if (typeof c.mlp_ratio !== 'number' || !(c.mlp_ratio > 0 && c.mlp_ratio <= L.mlp_ratio) || ffnHidden(c) < 1) {
    fail(`model.mlp_ratio must be a number in (0, ${L.mlp_ratio}] giving an FFN at least 1 wide, got ${JSON.stringify(c.mlp_ratio)}`);
  }
  if (c.layerscale_init !== null && (typeof c.layerscale_init !== 'number' || !Number.isFinite(c.layerscale_init) || Math.abs(c.layerscale_init) > L.layerscale_abs_max)) {
    fail(`model.layerscale_init must be null (no LayerScale) or a finite number of magnitude <= ${L.layerscale_abs_max}, got ${JSON.stringify(c.layerscale_init)}`);
  }
  if (typeof c.layer_norm_eps !== 'number' || !(c.layer_norm_eps > 0 && c.layer_norm_eps <= L.layer_norm_eps_max)) {
    fail(`model.layer_norm_eps must be a number in (0, ${L.layer_norm_eps_max}], got ${JSON.stringify(c.layer_norm_eps)}`);
  }
  (['qkv_bias', 'proj_bias', 'ffn_bias', 'drop_path_uniform', 'use_mask_token'] as const).forEach(bool);
  if (typeof c.drop_path_rate !== 'number' || !(c.drop_path_rate >= 0 && c.drop_path_rate < 1)) {
    fail(`model.drop_path_rate must be in [0, 1), got ${JSON.stringify(c.drop_path_rate)}`);
  }
  const ip = c.interpolation as Partial<PosInterp> | undefined;
  if (ip === null || typeof ip !== 'object') fail(`model.interpolation must be an object {offset, antialias}, got ${JSON.stringify(ip)}`);
  if (typeof ip?.offset !== 'number' || !(ip.offset >= 0 && ip.offset < 1)) {
    fail(`model.interpolation.offset must be a number in [0, 1) (0.1 = the DINOv2 code's rule, 0 = explicit size), got ${JSON.stringify(ip?.offset)}`);
  }
  if (typeof ip?.antialias !== 'boolean') fail(`model.interpolation.antialias must be true or false, got ${JSON.stringify(ip?.antialias)}`);
  const n = numParams(c);
  if (n > L.parameters) fail(`the architecture has ${n.toExponential(2)} parameters, more than the ${L.parameters.toExponential(0)} this tool allocates (check depth, embed_dim, mlp_ratio, img_size)`);
  return c;
}

/** Maps a Hugging Face config.json (model_type dinov2 / dinov2_with_registers) to a VitConfig. */
export function fromHfConfig(json: Record<string, unknown>, source: string): VitConfig {
  const type = json.model_type;
  if (type !== 'dinov2' && type !== 'dinov2_with_registers') {
    throw new ConfigError(`${source}: expected model_type "dinov2" or "dinov2_with_registers", found ${JSON.stringify(type)}`);
  }
  const reg = type === 'dinov2_with_registers';
  // A key that is present must have the right JSON type: "hidden_size": "96" is an error, not the default 768.
  const present = (k: string) => json[k] !== undefined && json[k] !== null;
  const num = (k: string, d: number): number => {
    if (!present(k)) return d;
    if (typeof json[k] !== 'number') throw new ConfigError(`${source}: "${k}" must be a number, found ${JSON.stringify(json[k])}`);
    return json[k] as number;
  };
  const bool = (k: string, d: boolean): boolean => {
    if (!present(k)) return d;
    if (typeof json[k] !== 'boolean') throw new ConfigError(`${source}: "${k}" must be true or false, found ${JSON.stringify(json[k])}`);
    return json[k] as boolean;
  };
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
