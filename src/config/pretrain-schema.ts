/**
 * The pretraining config tree (configs/pretrain/default.yaml) as a TypeScript type and its per-key rules.
 * Defaults live only in the YAML file; this file holds types and ranges. Keys are snake_case as in DINOv2.
 */
import { PRESETS, type FfnKind, type PosInterp, type PresetName, type VitConfig } from '../model/config.js';
import { bool, int, num, oneOf, pair, pattern, Rule, str, type SchemaOf } from './tree.js';

export type Centering = 'centering' | 'sinkhorn_knopp';
export type ScalingRule = 'none' | 'sqrt_wrt_1024';
export type Precision = 'fp32' | 'bf16';

/** `model`: the arch preset plus every VitConfig field; null = the preset's value (img_size: the global crop size). */
export interface PretrainModelConfig {
  arch: PresetName;
  embed_dim: number | null;
  depth: number | null;
  num_heads: number | null;
  mlp_ratio: number | null;
  ffn: FfnKind | null;
  patch_size: number;
  img_size: number | null;
  in_chans: number;
  num_register_tokens: number;
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

// Every VitConfig field must be settable under `model` (compile-time check).
type MissingVitKeys = Exclude<keyof VitConfig, keyof PretrainModelConfig>;
const _everyVitKey: [MissingVitKeys] extends [never] ? true : MissingVitKeys = true;
void _everyVitKey;

export interface PretrainConfig {
  output: string;
  seed: number;
  data: {
    root: string | null;
    manifest: string | null;
    path_column: string;
    equalize: boolean;
    max_bad_fraction: number;
    decode_workers: number;
    prefetch_batches: number;
    base_size: number | null;
    cache: string | null;
    /** Public-dataset adapters (see src/datasets): each {name, root, ...options}; replaces root/manifest. */
    datasets: DatasetEntry[] | null;
    mixture: 'proportional' | 'weighted';
  };
  model: PretrainModelConfig;
  init: {
    weights: string | null;
    heads: string | null;
  };
  dino: {
    loss_weight: number;
    head_n_prototypes: number;
    head_hidden_dim: number;
    head_bottleneck_dim: number;
    head_nlayers: number;
    koleo_loss_weight: number;
  };
  ibot: {
    loss_weight: number;
    separate_head: boolean;
    head_n_prototypes: number;
    head_hidden_dim: number;
    head_bottleneck_dim: number;
    head_nlayers: number;
    mask_sample_probability: number;
    mask_ratio_min_max: [number, number];
    max_mask_patches: number | null;
  };
  train: {
    batch_size_per_gpu: number;
    OFFICIAL_EPOCH_LENGTH: number;
    centering: Centering;
    center_momentum: number;
    student_temp: number;
  };
  optim: {
    epochs: number;
    base_lr: number;
    scaling_rule: ScalingRule;
    min_lr: number;
    warmup_epochs: number;
    weight_decay: number;
    weight_decay_end: number;
    clip_grad: number;
    layerwise_decay: number;
    patch_embed_lr_mult: number;
    freeze_last_layer_epochs: number;
    adamw_betas: [number, number];
    adamw_eps: number;
    accumulate_grad_batches: number;
  };
  teacher: {
    momentum_teacher: number;
    final_momentum_teacher: number;
    warmup_teacher_temp: number;
    teacher_temp: number;
    warmup_teacher_temp_epochs: number;
  };
  crops: {
    global_crops_size: number;
    local_crops_size: number;
    global_crops_scale: [number, number];
    local_crops_scale: [number, number];
    local_crops_number: number;
    global_affine: boolean;
  };
  compute: {
    device: string;
    precision: Precision;
    threads: number;
  };
  dist: {
    backend: 'auto' | 'gloo' | 'nccl';
    timeout_s: number;
  };
  checkpoint: {
    period_iterations: number;
    keep_last: number;
  };
  probe: {
    enabled: boolean;
    root: string | null;
    manifest: string;
    path_column: string;
    patient_column: string;
    split_column: string;
    classes: string[];
    max_images: number;
    k: number;
    temperature: number;
    linear_epochs: number;
    linear_lr: number;
  };
  log: {
    period_iterations: number;
    tensorboard: boolean;
  };
}

const MAX_PROTOTYPES = 1 << 20;
const positive = num([0, false]);
const nonNegative = num([0, true]);
const unit = num([0, true], [1, true]);

/** One entry of data.datasets: `name` and `root`, plus the adapter's options in snake_case. */
export interface DatasetEntry {
  name: string;
  root: string;
  weight?: number;
  [option: string]: unknown;
}

const DATASET_ENTRY_NAMES = ['chexpert', 'mimic', 'nih', 'padchest', 'brax', 'vindr', 'rsna', 'folder', 'csv'];
const datasetList = new Rule(
  `a list of {name: ${DATASET_ENTRY_NAMES.join('|')}, root: <folder>, weight?: number > 0, views?, split?, manifest?, …}`,
  (v) =>
    Array.isArray(v) &&
    v.length > 0 &&
    v.every(
      (e) =>
        typeof e === 'object' &&
        e !== null &&
        DATASET_ENTRY_NAMES.includes((e as DatasetEntry).name) &&
        typeof (e as DatasetEntry).root === 'string' &&
        ((e as DatasetEntry).weight === undefined || (typeof (e as DatasetEntry).weight === 'number' && ((e as DatasetEntry).weight as number) > 0)),
    ),
);
const belowOne = num([0, true], [1, false]);
const scaleRange = pair(num([0, false], [1, true]), true, 'a list [min, max] with 0 < min <= max <= 1');

/** Rules of every key; the YAML defaults file must list exactly these keys. */
export const PRETRAIN_SCHEMA: SchemaOf<PretrainConfig> = {
  output: str('a non-empty path string'),
  seed: int(0, 0xffffffff),
  data: {
    root: str('a folder path').orNull(),
    manifest: str('a CSV file path').orNull(),
    path_column: str('a non-empty column name'),
    equalize: bool(),
    max_bad_fraction: unit,
    decode_workers: int(0),
    prefetch_batches: int(0),
    base_size: int(1).orNull(),
    cache: str('a prepared-cache folder path').orNull(),
    datasets: datasetList.orNull(),
    mixture: oneOf(['proportional', 'weighted']),
  },
  model: {
    arch: oneOf(Object.keys(PRESETS)),
    embed_dim: int(1).orNull(),
    depth: int(1).orNull(),
    num_heads: int(1).orNull(),
    mlp_ratio: positive.orNull(),
    ffn: oneOf(['mlp', 'swiglu']).orNull(),
    patch_size: int(1),
    img_size: int(1).orNull(),
    in_chans: int(1),
    num_register_tokens: int(0),
    layerscale_init: positive.orNull(),
    layer_norm_eps: positive,
    qkv_bias: bool(),
    proj_bias: bool(),
    ffn_bias: bool(),
    drop_path_rate: belowOne,
    drop_path_uniform: bool(),
    use_mask_token: bool(),
    interpolation: {
      offset: nonNegative,
      antialias: bool(),
    },
  },
  init: {
    weights: str('a model folder or .safetensors path').orNull(),
    heads: str('a .safetensors path').orNull(),
  },
  dino: {
    loss_weight: nonNegative,
    head_n_prototypes: int(1, MAX_PROTOTYPES),
    head_hidden_dim: int(1),
    head_bottleneck_dim: int(1),
    head_nlayers: int(1),
    koleo_loss_weight: nonNegative,
  },
  ibot: {
    loss_weight: nonNegative,
    separate_head: bool(),
    head_n_prototypes: int(1, MAX_PROTOTYPES),
    head_hidden_dim: int(1),
    head_bottleneck_dim: int(1),
    head_nlayers: int(1),
    mask_sample_probability: unit,
    mask_ratio_min_max: pair(unit, true, 'a list [min, max] with 0 <= min <= max <= 1'),
    max_mask_patches: int(1).orNull(),
  },
  train: {
    batch_size_per_gpu: int(1),
    OFFICIAL_EPOCH_LENGTH: int(1),
    centering: oneOf(['centering', 'sinkhorn_knopp']),
    center_momentum: belowOne,
    student_temp: positive,
  },
  optim: {
    epochs: int(1),
    base_lr: nonNegative,
    scaling_rule: oneOf(['none', 'sqrt_wrt_1024']),
    min_lr: nonNegative,
    warmup_epochs: int(0),
    weight_decay: nonNegative,
    weight_decay_end: nonNegative,
    clip_grad: nonNegative,
    layerwise_decay: num([0, false], [1, true]),
    patch_embed_lr_mult: nonNegative,
    freeze_last_layer_epochs: int(0),
    adamw_betas: pair(belowOne, false, 'a list [beta1, beta2] of numbers in [0, 1)'),
    adamw_eps: positive,
    accumulate_grad_batches: int(1),
  },
  teacher: {
    momentum_teacher: unit,
    final_momentum_teacher: unit,
    warmup_teacher_temp: positive,
    teacher_temp: positive,
    warmup_teacher_temp_epochs: int(0),
  },
  crops: {
    global_crops_size: int(1),
    local_crops_size: int(1),
    global_crops_scale: scaleRange,
    local_crops_scale: scaleRange,
    local_crops_number: int(0),
    global_affine: bool(),
  },
  compute: {
    device: pattern(/^(cpu|cuda|cuda:\d+)$/, 'cpu, cuda or cuda:N'),
    precision: oneOf(['fp32', 'bf16']),
    threads: int(0),
  },
  dist: {
    backend: oneOf(['auto', 'gloo', 'nccl']),
    timeout_s: int(1),
  },
  probe: {
    enabled: bool(),
    root: str('a folder path').orNull(),
    manifest: str('a CSV file path'),
    path_column: str('a column name'),
    patient_column: str('a column name'),
    split_column: str('a column name'),
    classes: new Rule('a non-empty list of class names', (v) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0)),
    max_images: int(2),
    k: int(1),
    temperature: num([0, false]),
    linear_epochs: int(1),
    linear_lr: num([0, false]),
  },
  checkpoint: {
    period_iterations: int(1),
    keep_last: int(0),
  },
  log: {
    period_iterations: int(1),
    tensorboard: bool(),
  },
};

/**
 * Keys that may differ when resuming into an existing output folder: they change where and how fast the run
 * computes or what it writes, not what it learns. A dotted prefix covers a whole section.
 */
export const RESUME_SAFE_KEYS: readonly string[] = [
  'output',
  'data.max_bad_fraction',
  'data.decode_workers',
  'data.prefetch_batches',
  'probe',
  'compute.device',
  'compute.threads',
  'dist',
  'checkpoint',
  'log',
];
