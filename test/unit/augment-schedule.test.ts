import { describe, expect, it } from 'vitest';

import { buildSchedules, cosineSchedule, cxformerSchedule, type ScheduleConfig } from '../../src/augment/schedule.js';

// Expected values are worked out by hand from DINOv2's CosineScheduler:
// [0]*freeze ++ numpy.linspace(start, base, W) ++ [final + ½(base − final)(1 + cos(π·i/C)) for i < C], C = T − W − freeze.
const close = (a: number, b: number, rel = 1e-12) => expect(Math.abs(a - b)).toBeLessThanOrEqual(rel * Math.max(1e-300, Math.abs(b)));

describe('cosineSchedule', () => {
  it('warmup includes both endpoints, then the cosine starts again at base', () => {
    const s = cosineSchedule({ base: 1, final: 0, totalIters: 10, warmupIters: 4 });
    expect([0, 1, 2, 3].map(s)).toEqual([0, 1 / 3, 2 / 3, 1]); // linspace(0, 1, 4)
    expect(s(4)).toBe(1); // i = 0 of the cosine: the peak repeats
    close(s(5), 0.5 * (1 + Math.sqrt(3) / 2)); // i = 1, C = 6: cos(π/6)
    close(s(7), 0.5); // i = 3: cos(π/2) = 0
    close(s(9), 0.5 * (1 - Math.sqrt(3) / 2)); // i = 5: cos(5π/6)
    expect(s(10)).toBe(0); // it ≥ T → final
    expect(s(1_000_000)).toBe(0);
  });

  it('freeze iterations are 0, then warmup from startWarmup', () => {
    const s = cosineSchedule({ base: 2, final: 1, totalIters: 10, warmupIters: 3, startWarmup: 0.5, freezeIters: 2 });
    expect([0, 1, 2, 3, 4, 5].map(s)).toEqual([0, 0, 0.5, 1.25, 2, 2]);
    close(s(6), 1 + 0.5 * (1 + Math.cos(Math.PI / 5))); // C = 5: 1.904508…
    close(s(6), 1.9045084971874737);
    close(s(9), 1 + 0.5 * (1 - Math.cos(Math.PI / 5))); // cos(4π/5) = −cos(π/5): 1.095491…
    expect(s(10)).toBe(1);
  });

  it('a single warmup iteration is linspace(start, base, 1) = [start]', () => {
    const s = cosineSchedule({ base: 5, final: 1, totalIters: 3, warmupIters: 1, startWarmup: 2 });
    expect(s(0)).toBe(2);
    expect(s(1)).toBe(5);
    close(s(2), 3); // C = 2, i = 1: 1 + 2·(1 + cos(π/2))
  });

  it('without warmup is a pure half cosine; warmup = total is a pure linear ramp', () => {
    const wd = cosineSchedule({ base: 0.04, final: 0.4, totalIters: 4 });
    expect(wd(0)).toBeCloseTo(0.04, 15);
    close(wd(2), 0.22);
    expect(wd(4)).toBe(0.4);
    const tt = cosineSchedule({ base: 0.07, final: 0.07, totalIters: 4, warmupIters: 4, startWarmup: 0.04 });
    // numpy computes i·step + start with step = (stop − start)/(num − 1) in float64, and sets the last one to stop.
    const step = (0.07 - 0.04) / 3;
    expect([0, 1, 2, 3, 4, 99].map(tt)).toEqual([0.04, step + 0.04, 2 * step + 0.04, 0.07, 0.07, 0.07]);
    expect(tt(2)).toBe(0.060000000000000005); // numpy.linspace(0.04, 0.07, 4)[2] is not the literal 0.06
  });

  it('rejects inconsistent lengths and bad iterations', () => {
    expect(() => cosineSchedule({ base: 1, final: 0, totalIters: 5, warmupIters: 4, freezeIters: 2 })).toThrow(RangeError);
    expect(() => cosineSchedule({ base: 1, final: 0, totalIters: 2.5 })).toThrow(RangeError);
    const s = cosineSchedule({ base: 1, final: 0, totalIters: 5 });
    expect(() => s(-1)).toThrow(RangeError);
    expect(() => s(1.5)).toThrow(RangeError);
  });
});

describe('buildSchedules', () => {
  it('CXformer: lr warmup over 10 × 611 iterations, cosine to 1e-6 over 100 × 611', () => {
    const s = buildSchedules(cxformerSchedule);
    expect(s.totalIters).toBe(61100);
    expect(s.lr(0)).toBe(0);
    close(s.lr(1), 3e-4 / 6109);
    expect(s.lr(6109)).toBe(3e-4); // last warmup value is exactly base
    close(s.lr(6110), 3e-4); // first cosine value
    close(s.lr(6110 + 27495), 1e-6 + 0.5 * (3e-4 - 1e-6)); // C = 54990, i = C/2: 1.505e-4
    close(s.lr(61099), 1e-6 + 0.5 * 2.99e-4 * (1 - Math.cos(Math.PI / 54990)), 1e-9);
    expect(s.lr(61100)).toBe(1e-6);
    expect(s.lr(70000)).toBe(1e-6);
  });

  it('CXformer: last layer frozen for 611 iterations, then the lr schedule', () => {
    const s = buildSchedules(cxformerSchedule);
    for (const it of [0, 1, 300, 610]) expect(s.lastLayerLr(it)).toBe(0);
    close(s.lastLayerLr(611), (611 * 3e-4) / 6109);
    for (const it of [611, 5000, 6110, 40000, 61100]) expect(s.lastLayerLr(it)).toBe(s.lr(it));
  });

  it('CXformer: teacher temperature 0.04 → 0.07 over 30 × 611 iterations, constant momentum and zero wd', () => {
    const s = buildSchedules(cxformerSchedule);
    expect(s.teacherTemp(0)).toBe(0.04);
    close(s.teacherTemp(1), 0.04 + 0.03 / 18329);
    close(s.teacherTemp(9164), 0.04 + (9164 * 0.03) / 18329);
    expect(s.teacherTemp(18329)).toBe(0.07); // linspace endpoint
    expect(s.teacherTemp(18330)).toBe(0.07);
    expect(s.teacherTemp(61100)).toBe(0.07);
    for (const it of [0, 123, 30000, 61099, 61100, 99999]) {
      expect(s.momentum(it)).toBe(0.999);
      expect(s.wd(it)).toBe(0);
    }
  });

  it('DINOv2 defaults: wd 0.04 → 0.4 and momentum 0.992 → 1 as half cosines without warmup', () => {
    const cfg: ScheduleConfig = {
      ...cxformerSchedule,
      epochLength: 1250,
      baseLr: 4e-3,
      weightDecay: 0.04,
      weightDecayEnd: 0.4,
      momentumTeacher: 0.992,
      finalMomentumTeacher: 1,
    };
    const s = buildSchedules(cfg);
    expect(s.wd(0)).toBeCloseTo(0.04, 15);
    close(s.wd(62500), 0.22); // i = T/2
    expect(s.wd(125000)).toBe(0.4);
    expect(s.momentum(0)).toBeCloseTo(0.992, 15);
    close(s.momentum(62500), 0.996);
    expect(s.momentum(125000)).toBe(1);
    expect(s.lastLayerLr(1249)).toBe(0);
    close(s.lastLayerLr(1250), (1250 * 4e-3) / 12499);
    const v = s.at(62500);
    expect(v).toEqual({ lr: s.lr(62500), wd: s.wd(62500), momentum: s.momentum(62500), teacherTemp: 0.07, lastLayerLr: s.lr(62500) });
  });

  it('a freeze longer than training zeroes only the stored schedule (it ≥ T gives min_lr)', () => {
    const s = buildSchedules({ ...cxformerSchedule, epochs: 2, epochLength: 10, warmupEpochs: 1, freezeLastLayerEpochs: 5 });
    for (let it = 0; it < 20; it++) expect(s.lastLayerLr(it)).toBe(0);
    expect(s.lastLayerLr(20)).toBe(1e-6);
  });

  it('rejects fractional iteration counts', () => {
    expect(() => buildSchedules({ ...cxformerSchedule, warmupEpochs: 0.5, epochLength: 611 })).toThrow(RangeError);
  });
});
