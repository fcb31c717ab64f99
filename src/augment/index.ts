/**
 * Training randomness and schedules as data (docs/recipe.md §3.6, §3.9, §4): seeded streams, lr/wd/momentum/temperature
 * schedules, iBOT block masks and multi-crop augmentation plans, computed in TypeScript from (seed, rank,
 * iteration) and executed by the native trainer.
 */
export { PURPOSE, Rng, rngFor, seedFor, type UniformSource } from './rng.js';
export { npLinspaceAt, pyRound, torchLinspaceF32 } from './pymath.js';
export {
  buildSchedules,
  cosineSchedule,
  cxformerSchedule,
  type CosineScheduleOptions,
  type ScheduleConfig,
  type Schedules,
  type ScheduleValues,
} from './schedule.js';
export {
  blockMask,
  collateMasks,
  defaultMaxMaskPatches,
  generateBlockMask,
  type BlockMaskOptions,
  type BlockMaskResult,
  type CollatedMasks,
  type CollateMaskOptions,
} from './masking.js';
export {
  AUGMENT,
  colorJitterParams,
  cxformerMultiCrop,
  planBatch,
  planImageCrops,
  randomAffineParams,
  randomResizedCrop,
  type AffineOptions,
  type CropBox,
  type CropParams,
  type ImageCrops,
  type MultiCropConfig,
} from './plan.js';
