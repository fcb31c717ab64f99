/**
 * A collapse indicator for self-supervised pretraining (issue #14). DINO-style training has two failure modes that
 * the loss alone hides: **uniform** outputs (the teacher's targets flat over the K prototypes: entropy ln K, and every
 * DINO / iBOT cross-entropy then sits at ln K too) and **one prototype** (the targets one-hot on the same prototype for
 * every image: entropy near 0). The native step reports `teacher_entropy`, the mean entropy in nats of the teacher's
 * DINO targets; this module turns it into a ratio to ln K for the progress line and into a warning, once per episode,
 * when the ratio stays at either end for `window` consecutive steps. Pure TypeScript.
 */

/** Thresholds on H / ln K and the number of consecutive steps that make an episode. */
export interface CollapseOptions {
  /** H / ln K at or above this for `window` steps: uniform collapse. @default 0.99 */
  uniform: number;
  /** H / ln K at or below this for `window` steps: one-prototype collapse. @default 0.05 */
  onePrototype: number;
  /** @default 10 */
  window: number;
  /**
   * How far the ratio must move back before an episode that was warned about ends (hysteresis: a collapsed run
   * hovering at 0.985–0.995 is one episode, not a warning every few steps). @default 0.05
   */
  margin: number;
}

export const COLLAPSE_DEFAULTS: CollapseOptions = { uniform: 0.99, onePrototype: 0.05, window: 10, margin: 0.05 };

export type CollapseKind = 'uniform' | 'one-prototype';

/** Follows the entropy step by step; `observe` returns a warning when an episode begins, else null. */
export class CollapseMonitor {
  private run = 0;
  private kind: CollapseKind | null = null;
  private warned = false;
  private readonly lnK: number;

  constructor(
    /** Number of DINO prototypes K. */
    readonly prototypes: number,
    private readonly o: CollapseOptions = COLLAPSE_DEFAULTS,
  ) {
    if (!(Number.isInteger(prototypes) && prototypes >= 1)) throw new RangeError(`prototypes must be a positive integer, got ${prototypes}`);
    this.lnK = Math.log(prototypes);
  }

  /** H / ln K: 1 = uniform targets, 0 = one-hot targets (1 with a single prototype, where both coincide). */
  ratio(entropy: number): number {
    return this.prototypes === 1 ? 1 : entropy / this.lnK;
  }

  /**
   * Records one step's teacher entropy (nats) and the DINO loss terms; returns a warning the first time a collapse
   * has lasted `window` steps (again only after the run has left that state), else null.
   */
  observe(iteration: number, entropy: number, dinoTerms: readonly number[]): string | null {
    if (this.prototypes === 1) return null; // nothing to collapse to
    const r = this.ratio(entropy);
    let kind: CollapseKind | null = r >= this.o.uniform ? 'uniform' : r <= this.o.onePrototype ? 'one-prototype' : null;
    // A warned episode lasts until the ratio has moved `margin` away from its threshold.
    if (kind === null && this.warned && this.kind === 'uniform' && r > this.o.uniform - this.o.margin) return null;
    if (kind === null && this.warned && this.kind === 'one-prototype' && r < this.o.onePrototype + this.o.margin) return null;
    if (kind === null || kind !== this.kind) {
      this.run = 0;
      this.warned = false;
    }
    this.kind = kind;
    if (kind === null) return null;
    this.run += 1;
    if (this.run < this.o.window || this.warned) return null;
    this.warned = true;
    const lnK = this.lnK.toFixed(3);
    const terms = dinoTerms.map((v) => v.toFixed(3)).join(', ');
    if (kind === 'uniform') {
      return (
        `warning: collapse (uniform outputs) at iteration ${iteration}: for ${this.o.window} steps the teacher's targets ` +
        `have entropy ${entropy.toFixed(3)} of ln K = ${lnK} (K = ${this.prototypes}) and the DINO terms sit at ${terms}: ` +
        'the targets carry little information and these terms teach little (the probes, probe.enabled, show whether ' +
        'the backbone still improves). Try a lower teacher temperature, Sinkhorn-Knopp centering, fewer prototypes or ' +
        'a longer warm-up (docs/recipe.md §3.4); on the built-in phantoms (little variety) it is expected (BENCHMARKS.md).'
      );
    }
    return (
      `warning: collapse (one prototype) at iteration ${iteration}: for ${this.o.window} steps the teacher's targets have ` +
      `entropy ${entropy.toFixed(3)} of ln K = ${lnK} (K = ${this.prototypes}): every image goes to nearly the same ` +
      'prototype. Try centering or Sinkhorn-Knopp, a higher teacher temperature or a lower learning rate.'
    );
  }
}
