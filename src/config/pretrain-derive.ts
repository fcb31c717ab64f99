/**
 * Values computed from a validated pretraining config, in one place: iteration counts, the effective learning
 * rate (scaling rule + gradient accumulation, as the CXformer fork does), the iBOT mask-block limit, batch sizes,
 * patch grids and the backbone VitConfig. Cross-key checks that need these values live here too.
 */
import { ConfigError, presetConfig, validateConfig, type VitConfig } from '../model/config.js';
import type { PretrainConfig } from './pretrain-schema.js';

export interface PretrainDerived {
  /** Processes taking part (data-parallel world size). */
  world_size: number;
  /** batch_size_per_gpu · world_size: images per forward pass over all processes. */
  global_batch_size: number;
  /** global_batch_size · accumulate_grad_batches: images per optimizer step. */
  images_per_step: number;
  /** epochs · OFFICIAL_EPOCH_LENGTH. */
  total_iterations: number;
  /** warmup_epochs · OFFICIAL_EPOCH_LENGTH (linear lr warm-up). */
  warmup_iterations: number;
  /** freeze_last_layer_epochs · OFFICIAL_EPOCH_LENGTH (prototype layers at lr 0). */
  freeze_last_layer_iterations: number;
  /** warmup_teacher_temp_epochs · OFFICIAL_EPOCH_LENGTH. */
  teacher_temp_warmup_iterations: number;
  /** Peak lr after the scaling rule and the accumulation factor. */
  lr: number;
  /** Final lr after the accumulation factor. */
  min_lr: number;
  /** Log lines explaining lr (DINOv2 wording: "IGNORING LR SCALING RULE" / "sqrt scaling learning rate; ..."). */
  lr_messages: string[];
  /** Global crops per image (always 2 in DINOv2). */
  n_global_crops: 2;
  /** Patches per side of a global / local crop. */
  global_grid: number;
  local_grid: number;
  /** Patch tokens of a global crop (global_grid²). */
  global_patches: number;
  /** iBOT block-masking limit: ibot.max_mask_patches or the reference formula for the global crop. */
  max_mask_patches: number;
  /** Backbone architecture: model.arch's preset with the non-null model.* keys applied. */
  vit: VitConfig;
}

/**
 * The reference's iBOT max block size, `0.5 * img_size // patch_size * img_size // patch_size` evaluated left to
 * right in Python (docs/recipe.md §3.6, §7.6). For a crop of g·p px this is floor(g/2)·g: 0.5·N for an even grid (128 at
 * 224/14) and less for an odd one (666 at 518/14, not 684).
 */
export function referenceMaxMaskPatches(imgSize: number, patchSize: number): number {
  const a = Math.floor((0.5 * imgSize) / patchSize); // (0.5 * img) // p
  return Math.floor((a * imgSize) / patchSize); // (... * img) // p
}

/** Backbone VitConfig of a pretraining config (model.img_size null = the global crop size, as DINOv2). */
export function pretrainVitConfig(config: PretrainConfig): VitConfig {
  const m = config.model;
  const base = presetConfig(m.arch);
  const vit: VitConfig = {
    embed_dim: m.embed_dim ?? base.embed_dim,
    depth: m.depth ?? base.depth,
    num_heads: m.num_heads ?? base.num_heads,
    mlp_ratio: m.mlp_ratio ?? base.mlp_ratio,
    ffn: m.ffn ?? base.ffn,
    patch_size: m.patch_size,
    img_size: m.img_size ?? config.crops.global_crops_size,
    in_chans: m.in_chans,
    num_register_tokens: m.num_register_tokens,
    layerscale_init: m.layerscale_init,
    layer_norm_eps: m.layer_norm_eps,
    qkv_bias: m.qkv_bias,
    proj_bias: m.proj_bias,
    ffn_bias: m.ffn_bias,
    drop_path_rate: m.drop_path_rate,
    drop_path_uniform: m.drop_path_uniform,
    use_mask_token: m.use_mask_token,
    interpolation: { ...m.interpolation },
  };
  return validateConfig(vit, 'pretraining config');
}

const fmt = (x: number) => String(Number(x.toPrecision(12)));

/**
 * Derives run values from a validated config and checks the rules that span keys.
 * @param world data-parallel processes (default 1)
 * @throws ConfigError listing every cross-key problem
 */
export function derivePretrain(config: PretrainConfig, world = 1): PretrainDerived {
  if (!Number.isInteger(world) || world < 1) throw new ConfigError(`Expected an integer >= 1 for the world size but received ${world}`);
  const errors: string[] = [];
  const { optim, train, crops, ibot } = config;
  const E = train.OFFICIAL_EPOCH_LENGTH;
  const p = config.model.patch_size;

  for (const k of ['global_crops_size', 'local_crops_size'] as const) {
    if (crops[k] % p !== 0) {
      const lo = Math.max(p, Math.floor(crops[k] / p) * p);
      errors.push(`Expected a multiple of model.patch_size ${p} for crops.${k} but received ${crops[k]} (nearest: ${lo} or ${lo + p})`);
    }
  }
  let vit: VitConfig | undefined;
  try {
    // A global crop that is not a multiple of the patch is reported above; don't report it again as img_size.
    const cropOk = crops.global_crops_size % p === 0 || config.model.img_size !== null;
    vit = pretrainVitConfig(cropOk ? config : { ...config, crops: { ...crops, global_crops_size: p } });
  } catch (e) {
    errors.push((e as Error).message);
  }
  if (optim.warmup_epochs > optim.epochs) {
    errors.push(`Expected optim.warmup_epochs <= optim.epochs (${optim.epochs}) but received ${optim.warmup_epochs}`);
  }
  if (ibot.loss_weight > 0 && !config.model.use_mask_token) {
    errors.push('model.use_mask_token must be true while ibot.loss_weight > 0 (iBOT replaces masked patches with the mask token)');
  }
  const globalGrid = Math.floor(crops.global_crops_size / p);
  const globalPatches = globalGrid * globalGrid;
  if (ibot.max_mask_patches !== null && ibot.max_mask_patches > globalPatches) {
    errors.push(`Expected ibot.max_mask_patches <= ${globalPatches} (patches of a ${crops.global_crops_size} px crop) but received ${ibot.max_mask_patches}`);
  }
  if (errors.length || !vit) {
    throw new ConfigError(errors.length === 1 ? errors[0]! : `${errors.length} problems in the pretraining config:\n  - ${errors.join('\n  - ')}`);
  }

  // Learning rate: the scaling rule on the per-step global batch (DINOv2 utils/config.py), then the fork's
  // accumulation factor on lr and min_lr (docs/recipe.md §1).
  const globalBatch = train.batch_size_per_gpu * world;
  const A = optim.accumulate_grad_batches;
  const messages: string[] = [];
  let lr = optim.base_lr;
  if (optim.scaling_rule === 'sqrt_wrt_1024') {
    lr = optim.base_lr * Math.sqrt(globalBatch / 1024);
    messages.push(`sqrt scaling learning rate; base: ${fmt(optim.base_lr)}, new: ${fmt(lr)} (global batch ${globalBatch})`);
  } else {
    messages.push(`IGNORING LR SCALING RULE: lr = base_lr = ${fmt(lr)} at global batch ${globalBatch}`);
  }
  let minLr = optim.min_lr;
  if (A > 1) {
    lr *= A;
    minLr *= A;
    messages.push(`accumulate_grad_batches ${A}: lr and min_lr multiplied by ${A} (lr ${fmt(lr)}, min_lr ${fmt(minLr)})`);
  }

  return {
    world_size: world,
    global_batch_size: globalBatch,
    images_per_step: globalBatch * A,
    total_iterations: optim.epochs * E,
    warmup_iterations: optim.warmup_epochs * E,
    freeze_last_layer_iterations: optim.freeze_last_layer_epochs * E,
    teacher_temp_warmup_iterations: config.teacher.warmup_teacher_temp_epochs * E,
    lr,
    min_lr: minLr,
    lr_messages: messages,
    n_global_crops: 2,
    global_grid: globalGrid,
    local_grid: Math.floor(crops.local_crops_size / p),
    global_patches: globalPatches,
    max_mask_patches: ibot.max_mask_patches ?? referenceMaxMaskPatches(crops.global_crops_size, p),
    vit,
  };
}
