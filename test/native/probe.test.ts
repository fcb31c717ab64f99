/**
 * Linear-probe head training through the binding (src/finetune/probe.ts → crates/node/src/probe.rs →
 * crates/core/src/classify/probe.rs): a separable multi-label problem is learnt, multiclass probabilities, and the
 * error paths (lengths vs shapes → CXF_ARG naming the argument).
 */
import { describe, expect, it } from 'vitest';
import { fitLinearProbe, predictProbe, type Matrix } from '../../src/finetune/probe.js';
import { CxformerError } from '../../src/native/load.js';

/** Seeded LCG + Box–Muller (deterministic test data). */
function rng(seed: number): () => number {
  let s = BigInt(seed);
  const uniform = (): number => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return (Number(s >> 11n) + 0.5) / 2 ** 53;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** N×F Gaussian features, C labels y_c = [x·w_c + b_c > 0]; the same seed gives the same hyperplanes. */
function separable(n: number, f: number, c: number, seed: number, dataSeed = seed): { x: Matrix; y: Matrix } {
  const g = rng(seed);
  const w = Array.from({ length: c }, () => Array.from({ length: f }, g));
  const b = Array.from({ length: c }, () => 0.3 * g());
  const d = rng(dataSeed * 7919 + 1);
  const x = new Float32Array(n * f);
  const y = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < f; k++) x[i * f + k] = d();
    for (let j = 0; j < c; j++) {
      let s = b[j] ?? 0;
      for (let k = 0; k < f; k++) s += (w[j]?.[k] ?? 0) * (x[i * f + k] ?? 0);
      y[i * c + j] = s > 0 ? 1 : 0;
    }
  }
  return { x: { data: x, shape: [n, f] }, y: { data: y, shape: [n, c] } };
}

function auroc(scores: number[], labels: number[]): number {
  const pos = scores.filter((_, i) => labels[i] === 1);
  const neg = scores.filter((_, i) => labels[i] === 0);
  let wins = 0;
  for (const p of pos) for (const q of neg) wins += p > q ? 1 : p === q ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

const column = (m: Matrix, j: number): number[] => {
  const [n, c] = m.shape as [number, number];
  return Array.from({ length: n }, (_, i) => m.data[i * c + j] ?? NaN);
};

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<CxformerError> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CxformerError);
    return e as CxformerError;
  }
  throw new Error('expected an error');
}

describe('fitLinearProbe / predictProbe', () => {
  it('learns a linearly separable multi-label problem', async () => {
    const train = separable(400, 16, 3, 11);
    const val = separable(200, 16, 3, 11, 12);
    const { head, history } = await fitLinearProbe({
      features: train.x,
      targets: train.y,
      val: { features: val.x, targets: val.y },
      config: { lr: 0.05, epochs: 40, batchSize: 32, schedule: 'cosine', clipGrad: 0 },
    });
    expect(history).toHaveLength(40);
    expect(head.config).toMatchObject({ lr: 0.05, epochs: 40, batchSize: 32, schedule: 'cosine', task: 'multilabel', hidden: [], seed: 7479, posWeight: null });
    expect(head.tensors.map((t) => [t.name, t.shape])).toEqual([
      ['head.0.bias', [3]],
      ['head.0.weight', [3, 16]],
    ]);
    const first = history[0]!;
    const last = history[39]!;
    expect(last.trainLoss).toBeLessThan(0.5 * first.trainLoss);
    expect(last.valLoss).not.toBeNull();
    expect(last.valLoss!).toBeLessThan(first.valLoss!);
    expect(last.trainEntries).toBe(1200);
    expect(last.steps).toBe(40 * 13);

    for (const split of [train, val]) {
      const p = predictProbe(head, split.x);
      expect(p.shape).toEqual(split.y.shape);
      for (let j = 0; j < 3; j++) {
        const s = column(p, j);
        const l = column(split.y, j);
        const acc = s.filter((v, i) => v > 0.5 === (l[i] === 1)).length / s.length;
        expect(auroc(s, l)).toBeGreaterThan(0.95);
        expect(acc).toBeGreaterThan(split === train ? 0.95 : 0.9);
      }
    }
    // Same seed, same head (deterministic).
    const again = await fitLinearProbe({
      features: train.x,
      targets: train.y,
      config: { lr: 0.05, epochs: 40, batchSize: 32, schedule: 'cosine', clipGrad: 0 },
    });
    expect(again.head.tensors).toEqual(head.tensors);
  });

  it('masked entries do not matter, and multiclass gives softmax probabilities', async () => {
    const { x, y } = separable(60, 5, 2, 3);
    const mask = new Uint8Array(120).map((_, i) => (i % 3 === 0 ? 0 : 1));
    const flipped = new Float32Array(y.data).map((v, i) => (mask[i] ? v : i % 2 ? NaN : 1 - v));
    const config = { lr: 0.02, epochs: 3, batchSize: 8 };
    const a = await fitLinearProbe({ features: x, targets: y, mask, config });
    const b = await fitLinearProbe({ features: x, targets: { data: flipped, shape: y.shape }, mask, config });
    expect(b.head.tensors).toEqual(a.head.tensors);

    // Multiclass: class index in column 0 of (N, C) targets.
    const n = 90;
    const g = rng(5);
    const feats = new Float32Array(n * 3);
    const targets = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 3; k++) feats[i * 3 + k] = (k === i % 3 ? 3 : 0) + 0.5 * g();
      targets[i * 3] = i % 3;
    }
    const mc = await fitLinearProbe({
      features: { data: feats, shape: [n, 3] },
      targets: { data: targets, shape: [n, 3] },
      config: { task: 'multiclass', lr: 0.05, epochs: 30, batchSize: 16 },
    });
    const p = predictProbe(mc.head, { data: feats, shape: [n, 3] });
    let correct = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from(p.data.subarray(i * 3, i * 3 + 3));
      expect(row.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
      if (row.indexOf(Math.max(...row)) === i % 3) correct++;
    }
    expect(correct / n).toBeGreaterThan(0.95);
  });

  it('stops with CXF_CANCELLED when the signal aborts', async () => {
    const { x, y } = separable(2000, 32, 2, 9);
    const pre = new AbortController();
    pre.abort();
    expect((await codeOf(fitLinearProbe({ features: x, targets: y, signal: pre.signal }))).code).toBe('CXF_CANCELLED');
    const ac = new AbortController();
    const run = fitLinearProbe({ features: x, targets: y, config: { epochs: 100_000 }, signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    expect((await codeOf(run)).code).toBe('CXF_CANCELLED');
  });

  it('rejects length mismatches with CXF_ARG naming the argument', async () => {
    const { x, y } = separable(20, 4, 2, 1);
    let e = await codeOf(fitLinearProbe({ features: { data: x.data.subarray(1), shape: x.shape }, targets: y }));
    expect(e.code).toBe('CXF_ARG');
    expect(e.message).toMatch(/features: featuresShape \[20, 4\] needs 80 values but the Float32Array has 79/);

    e = await codeOf(fitLinearProbe({ features: x, targets: y, mask: new Uint8Array(39) }));
    expect(e.code).toBe('CXF_ARG');
    expect(e.message).toMatch(/mask: targetsShape \[20, 2\] needs 40 values but the Uint8Array has 39/);

    e = await codeOf(fitLinearProbe({ features: x, targets: y, val: { features: x, targets: { data: y.data.subarray(2), shape: y.shape } } }));
    expect(e.code).toBe('CXF_ARG');
    expect(e.message).toMatch(/valTargets: valTargetsShape \[20, 2\] needs 40 values but the Float32Array has 38/);

    e = await codeOf(fitLinearProbe({ features: { data: x.data.subarray(0, 40), shape: [10, 4] }, targets: y }));
    expect(e.code).toBe('CXF_ARG');
    expect(e.message).toMatch(/10 rows.*20/);

    e = await codeOf(fitLinearProbe({ features: x, targets: y, config: { lr: 0.1, learningRate: 1 } as never }));
    expect(e.code).toBe('CXF_CONFIG');
    expect(e.message).toMatch(/learningRate/);

    e = await codeOf(fitLinearProbe({ features: x, targets: y, config: { posWeight: [1, 2, 3] } }));
    expect(e.code).toBe('CXF_CONFIG');
    expect(e.message).toMatch(/posWeight has 3 values but the targets have C = 2/);

    const { head } = await fitLinearProbe({ features: x, targets: y, config: { epochs: 1 } });
    e = await codeOf(() => predictProbe(head, { data: new Float32Array(15), shape: [5, 3] }));
    expect(e.code).toBe('CXF_SHAPE');
    expect(e.message).toMatch(/F = 3 .*F = 4/);
    e = await codeOf(() => predictProbe(head, { data: new Float32Array(15), shape: [5, 4] }));
    expect(e.code).toBe('CXF_ARG');
    expect(e.message).toMatch(/features: shape \[5, 4\] needs 20 values/);
  });
});
