/**
 * The defaults of the downstream trainers, in one table: configs/downstream/defaults.json. The CLI declares no
 * defaults of its own for these options (its --help prints these), the library functions (`linearProbe`,
 * `fullFinetune`, `trainSegmentation`) fill what a caller left out from here, and the native configs receive every
 * field filled. Values: docs/recipe.md §5.1 (classification) and §5.2 (segmentation).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ClassificationDefaults {
  epochs: number;
  /** Head learning rate. */
  lr: number;
  /** Training batch per optimizer step: feature rows (linear) or images (full). */
  headBatchSize: number;
  backboneLr: number;
  layerwiseDecay: number;
  patchEmbedLrMult: number;
  weightDecay: number;
  warmupEpochs: number;
  schedule: 'constant' | 'cosine';
  clipGrad: number;
  seed: number;
  hidden: number[];
  posWeight: number[] | null;
  cropScale: [number, number];
  augment: 'spec' | 'light' | 'none';
  selectBest: 'valAuroc' | 'valAuprc' | 'valLoss' | 'last';
  patience: number;
  /** Images per forward pass (features, evaluation). */
  batchSize: number;
  checkpointSteps: number;
  clsLayers: number;
  avgpool: boolean;
  bootstrap: number;
  /** TensorBoard event files beside metrics.jsonl (history.jsonl: linear); CXFORMER_TENSORBOARD=0 turns them off regardless. */
  tensorboard: boolean;
}

export interface SegmentationDefaults {
  epochs: number;
  lr: number;
  batchSize: number;
  warmupEpochs: number;
  evalBatchSize: number;
  checkpointSteps: number;
  seed: number;
  overlays: number;
  bootstrap: number;
  /** TensorBoard event files beside metrics.jsonl; CXFORMER_TENSORBOARD=0 turns them off regardless. */
  tensorboard: boolean;
}

export const DOWNSTREAM_DEFAULTS_FILE = fileURLToPath(new URL('../../configs/downstream/defaults.json', import.meta.url));

function readTable(): { classification: ClassificationDefaults; segmentation: SegmentationDefaults } {
  try {
    return JSON.parse(readFileSync(DOWNSTREAM_DEFAULTS_FILE, 'utf8'));
  } catch (e) {
    throw new Error(`${DOWNSTREAM_DEFAULTS_FILE}: expected the JSON table of downstream defaults (reinstall cxformer): ${(e as Error).message}`);
  }
}

const table = readTable();

/** Classification defaults (linear probe and full fine-tuning). */
export const CLASSIFICATION: Readonly<ClassificationDefaults> = Object.freeze(table.classification);
/** Segmentation defaults. */
export const SEGMENTATION: Readonly<SegmentationDefaults> = Object.freeze(table.segmentation);

/** The encoder optimizer values of `finetune --task report --mode full` when not given (src/rrg/train.ts). */
export const REPORT_ENCODER = Object.freeze({ backboneLr: 1e-4, layerwiseDecay: 1, patchEmbedLrMult: 1 });

/**
 * The LLaVA recipe's values when not given (`finetune --task report --decoder llm`, src/llava/train.ts): LLaVA-Rad's
 * (github.com/microsoft/LLaVA-Rad `scripts/pretrain.sh`, `scripts/finetune_lora.sh`) per stage; `full`: the whole LM
 * fine-tuned (MAIRA-2-style, for LMs up to ~1.5B) at 2e-5. `batchSize` is per rank and step (LLaVA-Rad's global
 * batches are 256 and 128: set them with --head-batch-size × ranks, --micro-batches for memory).
 */
export const LLAVA_STAGE_DEFAULTS = Object.freeze({
  align: Object.freeze({ epochs: 1, lr: 1e-3 }),
  finetune: Object.freeze({ epochs: 3, lr: 1e-4, lmLr: 1e-4 }),
  full: Object.freeze({ lr: 2e-5, lmLr: 2e-5 }),
  lora: Object.freeze({ rank: 64, alpha: 128, dropout: 0.05 }),
  warmup: 0.03,
  batchSize: 16,
  maxReportTokens: 256,
});

/** The instruction of the LLaVA recipe's chat prompt (LLaVA-Rad's wording). */
export const LLAVA_INSTRUCTION = 'Describe the findings of the chest X-ray.';
