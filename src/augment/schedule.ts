/**
 * Training schedules (docs/recipe.md §3.9): DINOv2's `CosineScheduler` (dinov2/utils/utils.py) and the five schedules built
 * by `build_schedulers` (dinov2/train/train.py, CXformer cxr_pretrain.py). An "epoch" is `epochLength`
 * (OFFICIAL_EPOCH_LENGTH) iterations, not a pass over the data.
 */
import { npLinspaceAt } from './pymath.js';

export interface CosineScheduleOptions {
  /** Peak value (end of warmup, start of the cosine). */
  base: number;
  /** Value at the end of the cosine and for every iteration ≥ totalIters. */
  final: number;
  totalIters: number;
  /** @default 0 */
  warmupIters?: number;
  /** First warmup value. @default 0 */
  startWarmup?: number;
  /** Leading iterations whose value is 0. @default 0 */
  freezeIters?: number;
}

/**
 * DINOv2's CosineScheduler as a function of the iteration: `freezeIters` zeros, then
 * `numpy.linspace(startWarmup, base, warmupIters)` (both endpoints included, so the last warmup value is `base`),
 * then final + ½(base − final)(1 + cos(π·i/C)) for i = 0..C−1 with C = totalIters − warmupIters − freezeIters
 * (so the peak `base` appears twice when warmup > 0); `final` for it ≥ totalIters.
 */
export function cosineSchedule(opts: CosineScheduleOptions): (it: number) => number {
  const { base, final, totalIters: T } = opts;
  const W = opts.warmupIters ?? 0;
  const F = opts.freezeIters ?? 0;
  const start = opts.startWarmup ?? 0;
  for (const [name, v] of [['totalIters', T], ['warmupIters', W], ['freezeIters', F]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`cosineSchedule: ${name} must be an integer ≥ 0, got ${v}`);
  }
  const C = T - W - F;
  if (C < 0) throw new RangeError(`cosineSchedule: freezeIters + warmupIters (${F + W}) exceed totalIters (${T})`);
  return (it: number): number => {
    if (!Number.isSafeInteger(it) || it < 0) throw new RangeError(`schedule iteration must be an integer ≥ 0, got ${it}`);
    if (it >= T) return final;
    if (it < F) return 0;
    if (it < F + W) return npLinspaceAt(start, base, W, it - F);
    const i = it - F - W;
    return final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * i) / C));
  };
}

/** Schedule settings, named after the DINOv2/CXformer config keys (optim.*, teacher.*, train.OFFICIAL_EPOCH_LENGTH). */
export interface ScheduleConfig {
  epochs: number;
  /** OFFICIAL_EPOCH_LENGTH: iterations per "epoch" (CXformer 611, DINOv2 1250). */
  epochLength: number;
  /** optim.lr, used as is (CXformer disables the sqrt batch-size scaling). */
  baseLr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  weightDecayEnd: number;
  momentumTeacher: number;
  finalMomentumTeacher: number;
  warmupTeacherTemp: number;
  teacherTemp: number;
  warmupTeacherTempEpochs: number;
  freezeLastLayerEpochs: number;
}

/** The values of one iteration. */
export interface ScheduleValues {
  lr: number;
  wd: number;
  momentum: number;
  teacherTemp: number;
  /** lr of the prototype ("last_layer") parameters: the lr schedule, 0 while the last layer is frozen. */
  lastLayerLr: number;
}

export interface Schedules {
  /** epochs · epochLength. */
  totalIters: number;
  lr: (it: number) => number;
  wd: (it: number) => number;
  momentum: (it: number) => number;
  teacherTemp: (it: number) => number;
  lastLayerLr: (it: number) => number;
  /** All five values of iteration `it`. */
  at: (it: number) => ScheduleValues;
}

/** CXformer pretraining values (docs/recipe.md §1, §3.9: vit_*_cxr.yaml with 100 epochs of 611 iterations). */
export const cxformerSchedule: ScheduleConfig = {
  epochs: 100,
  epochLength: 611,
  baseLr: 3e-4,
  minLr: 1e-6,
  warmupEpochs: 10,
  weightDecay: 0,
  weightDecayEnd: 0,
  momentumTeacher: 0.999,
  finalMomentumTeacher: 0.999,
  warmupTeacherTemp: 0.04,
  teacherTemp: 0.07,
  warmupTeacherTempEpochs: 30,
  freezeLastLayerEpochs: 1,
};

function iters(epochs: number, epochLength: number, name: string): number {
  const n = epochs * epochLength;
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} × epochLength must be an integer ≥ 0, got ${n}`);
  return n;
}

/**
 * The schedules of `build_schedulers`:
 * - lr: cosine base_lr → min_lr over epochs·E, warmup warmupEpochs·E from 0;
 * - wd: cosine weightDecay → weightDecayEnd, no warmup; momentum: cosine momentumTeacher → finalMomentumTeacher;
 * - teacherTemp: CosineScheduler(teacher_temp, teacher_temp, T = W = warmupTeacherTempEpochs·E, start =
 *   warmup_teacher_temp), i.e. linspace(warmupTeacherTemp, teacherTemp, W) then teacherTemp;
 * - lastLayerLr: the lr schedule with its first freezeLastLayerEpochs·E entries set to 0. As in the reference
 *   (which zeroes the stored array), iterations ≥ totalIters still return min_lr even if the freeze is longer.
 */
export function buildSchedules(cfg: ScheduleConfig): Schedules {
  const E = cfg.epochLength;
  const T = iters(cfg.epochs, E, 'epochs');
  const lr = cosineSchedule({ base: cfg.baseLr, final: cfg.minLr, totalIters: T, warmupIters: iters(cfg.warmupEpochs, E, 'warmupEpochs') });
  const wd = cosineSchedule({ base: cfg.weightDecay, final: cfg.weightDecayEnd, totalIters: T });
  const momentum = cosineSchedule({ base: cfg.momentumTeacher, final: cfg.finalMomentumTeacher, totalIters: T });
  const TT = iters(cfg.warmupTeacherTempEpochs, E, 'warmupTeacherTempEpochs');
  const teacherTemp = cosineSchedule({
    base: cfg.teacherTemp,
    final: cfg.teacherTemp,
    totalIters: TT,
    warmupIters: TT,
    startWarmup: cfg.warmupTeacherTemp,
  });
  const freeze = Math.min(iters(cfg.freezeLastLayerEpochs, E, 'freezeLastLayerEpochs'), T);
  const lastLayerLr = (it: number): number => {
    const v = lr(it); // validates it
    return it < freeze ? 0 : v;
  };
  return {
    totalIters: T,
    lr,
    wd,
    momentum,
    teacherTemp,
    lastLayerLr,
    at: (it) => ({ lr: lr(it), wd: wd(it), momentum: momentum(it), teacherTemp: teacherTemp(it), lastLayerLr: lastLayerLr(it) }),
  };
}
