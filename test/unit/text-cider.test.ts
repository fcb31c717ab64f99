/**
 * CIDEr-D against text/cider.json (pycocoevalcap 1.2 Cider(): per-segment scores and the corpus mean, on raw and
 * PTB-tokenised text, every corpus), plus hand-computed cases and the all-empty-reference error (pycoco raises).
 */
import { describe, expect, it } from 'vitest';

import { ciderD } from '../../src/eval/text/cider.js';
import { Mismatches, textGolden } from './text-golden.js';

interface CiderPair {
  id: string;
  hyp: string;
  refs: string[];
  ptb_hyp: string;
  ptb_refs: string[];
  pycoco_raw: number;
  pycoco_ptb: number;
}
interface CiderCorpus {
  name: string;
  pycoco_raw_mean: number;
  pycoco_ptb_mean: number;
  pairs: CiderPair[];
}

const golden = textGolden<{ corpora: CiderCorpus[] }>('cider');

describe('pycocoevalcap Cider vs text/cider.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: corpus mean and every segment, raw and PTB-tokenised`, () => {
      const m = new Mismatches();
      const raw = ciderD(c.pairs.map((p) => p.hyp), c.pairs.map((p) => p.refs));
      const ptb = ciderD(c.pairs.map((p) => p.ptb_hyp), c.pairs.map((p) => p.ptb_refs));
      m.check(raw.corpus, c.pycoco_raw_mean, 'raw mean');
      m.check(ptb.corpus, c.pycoco_ptb_mean, 'ptb mean');
      c.pairs.forEach((p, i) => {
        m.check(raw.segments[i], p.pycoco_raw, `${p.id} raw`);
        m.check(ptb.segments[i], p.pycoco_ptb, `${p.id} ptb`);
      });
      expect(m.failures).toEqual([]);
      expect(m.count).toBe(2 + 2 * c.pairs.length);
    });
  }
});

describe('CIDEr-D: hand-computed cases', () => {
  it('identical pairs with no n-gram shared between segments score 10 (cosine 1 per order, no length penalty)', () => {
    const r = ciderD(['a b c d e', 'f g h i j'], [['a b c d e'], ['f g h i j']]);
    r.segments.forEach((s) => expect(s).toBeCloseTo(10, 12));
    expect(r.corpus).toBeCloseTo(10, 12);
  });
  it('a one-segment corpus scores 0: every df = 1 = #segments, so every idf is log 1 − log 1 = 0', () => {
    expect(ciderD(['no acute process'], [['no acute process']])).toEqual({ corpus: 0, segments: [0] });
  });
  it('an empty hypothesis scores 0; the others are unaffected by its presence except through #segments', () => {
    const r = ciderD(['', 'a b c d e'], [['x y z'], ['a b c d e']]);
    expect(r.segments[0]).toBe(0);
    expect(r.segments[1]).toBeCloseTo(10, 12);
    expect(r.corpus).toBeCloseTo(5, 12);
  });
  it('unigram-only case by hand: hyp "a" vs ref "a b" in a 2-segment corpus', () => {
    // Segment 2 ("c" / "c") only makes df(a) = df(b) = 1 with 2 segments: idf = log 2 for every n-gram of segment 1.
    // Order 1: v_hyp = {a: L}, v_ref = {a: L, b: L} with L = log 2: (min(L, L)·L) / (L · L√2) = 1/√2.
    // Order 2: hyp has no bigram (norm 0): 0; ref has one. Orders 3, 4: 0.
    // Length (bigram count) 0 vs 1: penalty e^(−1/72). Score = 10 · (1/√2 · e^(−1/72)) / 4.
    const r = ciderD(['a', 'c'], [['a b'], ['c']]);
    expect(r.segments[0]).toBeCloseTo((10 * (Math.SQRT1_2 * Math.exp(-1 / 72))) / 4, 12);
  });
  it('several references average their similarities', () => {
    const one = ciderD(['a b c d', 'x y'], [['a b c d'], ['x y']]).segments[0]!;
    const two = ciderD(['a b c d', 'x y'], [['a b c d', 'a b c d'], ['x y']]).segments[0]!;
    expect(two).toBeCloseTo(one, 12);
  });
  it('every reference empty: a clear error (pycocoevalcap raises on max() of an empty table)', () => {
    expect(() => ciderD(['No acute process.', 'x'], [[''], ['   ']])).toThrow(/every reference in the corpus is empty/);
  });
  it('rejects mismatched lengths, an empty corpus and a segment without references', () => {
    expect(() => ciderD(['a'], [])).toThrow(/1 hypotheses but 0 reference lists/);
    expect(() => ciderD([], [])).toThrow(/empty/);
    expect(() => ciderD(['a', 'b'], [['a'], []])).toThrow(/refs\[1\] must be a non-empty array/);
  });
});
