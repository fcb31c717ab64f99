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
