import { describe, expect, it } from 'vitest';
import { CollapseMonitor } from '../../src/train/collapse.js';

describe('CollapseMonitor', () => {
  const K = 1024;
  const lnK = Math.log(K);

  it('H / ln K is 1 for uniform targets and 0 for one-hot ones', () => {
    const m = new CollapseMonitor(K);
    // entropy of a uniform distribution over K = ln K; of a one-hot = 0; of uniform over 32 of 1024 = ln 32 = ln K / 2
    expect(m.ratio(lnK)).toBe(1);
    expect(m.ratio(0)).toBe(0);
    expect(m.ratio(Math.log(32))).toBeCloseTo(0.5, 12);
  });

  it('warns once when uniform outputs last `window` steps, naming ln K and the DINO terms, and again only after leaving', () => {
    const m = new CollapseMonitor(K, { uniform: 0.99, onePrototype: 0.05, window: 3, margin: 0.05 });
    const at = (it: number, h: number) => m.observe(it, h, [lnK, lnK]);
    expect(at(0, 0.5 * lnK)).toBeNull();
    expect(at(1, 0.995 * lnK)).toBeNull();
    expect(at(2, 0.995 * lnK)).toBeNull();
    const w = at(3, 0.999 * lnK);
    expect(w).toMatch(/^warning: collapse \(uniform outputs\) at iteration 3: for 3 steps/);
    expect(w).toContain(`ln K = ${lnK.toFixed(3)} (K = 1024)`);
    expect(w).toContain(`DINO terms sit at ${lnK.toFixed(3)}, ${lnK.toFixed(3)}`);
    expect(at(4, lnK)).toBeNull(); // same episode: no repeat
    expect(at(5, 0.97 * lnK)).toBeNull(); // below the threshold but within the margin: still the same episode
    expect(at(6, lnK)).toBeNull();
    expect(at(7, lnK)).toBeNull();
    expect(at(8, lnK)).toBeNull();
    expect(at(5, 0.6 * lnK)).toBeNull(); // left it
    expect(at(6, lnK)).toBeNull();
    expect(at(7, lnK)).toBeNull();
    expect(at(8, lnK)).toMatch(/uniform outputs\) at iteration 8/); // a new episode
  });

  it('warns on one-prototype collapse; an interruption of the run of steps resets the count', () => {
    const m = new CollapseMonitor(K, { uniform: 0.99, onePrototype: 0.05, window: 2, margin: 0.05 });
    expect(m.observe(0, 0.01, [1, 1])).toBeNull();
    expect(m.observe(1, 0.5 * lnK, [1, 1])).toBeNull();
    expect(m.observe(2, 0.01, [1, 1])).toBeNull();
    expect(m.observe(3, 0.02, [1, 1])).toMatch(/^warning: collapse \(one prototype\) at iteration 3/);
  });

  it('a single prototype has nothing to collapse to', () => {
    const m = new CollapseMonitor(1, { uniform: 0.99, onePrototype: 0.05, window: 1, margin: 0.05 });
    expect(m.ratio(0)).toBe(1);
    expect(m.observe(0, 0, [0])).toBeNull();
    expect(() => new CollapseMonitor(0)).toThrow(/positive integer/);
  });
});
