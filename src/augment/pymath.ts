/**
 * Numeric semantics of the Python reference that the planners reproduce: Python's `round`, numpy's and
 * torch's `linspace`.
 */

/** Python 3 `round(x)` to an integer: nearest, ties to even (`round(2.5) == 2`, unlike `Math.round`). */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact for |x| < 2^52
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Element i of `numpy.linspace(start, stop, num)` (float64, endpoint included): `i·step + start` with
 * step = (stop − start)/(num − 1); the last element is exactly `stop`; with num = 1 the only element is `start`.
 */
export function npLinspaceAt(start: number, stop: number, num: number, i: number): number {
  if (num === 1) return start;
  if (i === num - 1) return stop;
  const delta = stop - start;
  const step = delta / (num - 1);
  return step === 0 ? (i / (num - 1)) * delta + start : i * step + start;
}

/**
 * `torch.linspace(start, end, steps)` in float32 as the CPU scalar kernel computes it: step = (end − start)/(steps − 1)
 * in float32; the first half is start + step·i, the second half end − step·(steps − 1 − i) (so both ends are exact).
 * Current torch uses only this scalar formula; older releases also had a vectorised path (outputs of ≥ 16 elements)
 * building runs as base + k·step, which can differ in the last float32 bit; that matters only where N·p lands
 * within ~1e-7 of an integer.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): number[] {
  const f = Math.fround;
  const s = f(start);
  const e = f(end);
  if (steps === 1) return [s];
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? f(s + f(step * i)) : f(e - f(step * (steps - 1 - i)))));
}
