/**
 * BLEU against text/bleu.json (pycocoevalcap 1.2 Bleu(4) on raw and PTB-tokenised text, every corpus and segment;
 * sacrebleu 2.6.0 corpus_bleu with 13a / none / intl tokenisation, lower-casing and four smoothing methods, its
 * signature, sentence_bleu per pair in 16 configurations and the per-pair statistics), plus hand-computed cases and
 * tokenizer outputs recorded from sacrebleu 2.6.0.
 */
import { describe, expect, it } from 'vitest';

import {
  computeBleu,
  pycocoBleu,
  sacreBleu,
  sacreBleuSignature,
  sacreBleuStats,
  sacreSentenceBleu,
  type SmoothMethod,
} from '../../src/eval/text/bleu.js';
import { NgramTable } from '../../src/eval/text/ngram.js';
import { isPySpace, pyRstrip, pySplit, pyStrip } from '../../src/eval/text/pystr.js';
import { tokenize13a, tokenizeIntl, type SacreTokenizer } from '../../src/eval/text/tok13a.js';
import { Mismatches, textGolden } from './text-golden.js';

interface SacreConfig {
  tokenize: SacreTokenizer;
  lowercase: boolean;
  smooth_method: SmoothMethod;
}
interface SacreCorpus extends SacreConfig {
  score: number;
  counts: number[];
  totals: number[];
  precisions: number[];
  bp: number;
  sys_len: number;
  ref_len: number;
  signature?: string;
}
interface BleuPair {
  id: string;
  hyp: string;
  refs: string[];
  ptb_hyp?: string;
  ptb_refs?: string[];
  pycoco_raw: number[];
  pycoco_ptb?: number[];
  sacrebleu_sentence: number[];
  sacrebleu_sentence_stats: Record<'13a' | 'none', number[]>;
}
interface BleuCorpus {
  name: string;
  pycoco_raw: { corpus: number[]; testlen: number; reflen: number };
  pycoco_ptb: { corpus: number[]; testlen: number; reflen: number };
  sacrebleu_corpus: SacreCorpus[];
  pairs: BleuPair[];
}
interface BleuGolden {
  sacrebleu_sentence_configs: SacreConfig[];
  corpora: BleuCorpus[];
}

const golden = textGolden<BleuGolden>('bleu');

describe('pycocoevalcap Bleu(4) vs text/bleu.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: raw text, corpus BLEU-1..4, lengths and every segment`, () => {
      const m = new Mismatches();
      const r = pycocoBleu(c.pairs.map((p) => p.hyp), c.pairs.map((p) => p.refs));
      c.pycoco_raw.corpus.forEach((v, k) => m.check(r.corpus[k], v, `corpus BLEU-${k + 1}`));
      expect([r.testlen, r.reflen]).toEqual([c.pycoco_raw.testlen, c.pycoco_raw.reflen]);
      c.pairs.forEach((p, i) => p.pycoco_raw.forEach((v, k) => m.check(r.segments[k]![i], v, `${p.id} BLEU-${k + 1}`)));
      expect(m.failures).toEqual([]);
      expect(m.count).toBe(4 + 4 * c.pairs.length);
    });
    it(`${c.name}: PTB-tokenised text (the goldens' ptb_hyp / ptb_refs)`, () => {
      const pairs = c.pairs.filter((p) => p.pycoco_ptb !== undefined);
      expect(pairs.length).toBeGreaterThan(0);
      const m = new Mismatches();
      const r = pycocoBleu(pairs.map((p) => p.ptb_hyp!), pairs.map((p) => p.ptb_refs!));
      c.pycoco_ptb.corpus.forEach((v, k) => m.check(r.corpus[k], v, `corpus BLEU-${k + 1}`));
      expect([r.testlen, r.reflen]).toEqual([c.pycoco_ptb.testlen, c.pycoco_ptb.reflen]);
      pairs.forEach((p, i) => p.pycoco_ptb!.forEach((v, k) => m.check(r.segments[k]![i], v, `${p.id} BLEU-${k + 1}`)));
      expect(m.failures).toEqual([]);
    });
  }
});

describe('sacrebleu corpus_bleu vs text/bleu.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: ${c.sacrebleu_corpus.length} configurations (score, precisions, bp, lengths, counts, signature)`, () => {
      const m = new Mismatches();
      const hyps = c.pairs.map((p) => p.hyp);
      const refs = c.pairs.map((p) => p.refs);
      for (const s of c.sacrebleu_corpus) {
        const opts = { tokenize: s.tokenize, lowercase: s.lowercase, smooth: s.smooth_method };
        const where = `${s.tokenize}/${s.lowercase ? 'lc' : 'cased'}/${s.smooth_method}`;
        const r = sacreBleu(hyps, refs, opts);
        m.check(r.score, s.score, `${where} score`);
        s.precisions.forEach((v, k) => m.check(r.precisions[k], v, `${where} precision ${k + 1}`));
        m.check(r.bp, s.bp, `${where} bp`);
        expect([r.sysLen, r.refLen, r.counts, r.totals], where).toEqual([s.sys_len, s.ref_len, s.counts, s.totals]);
        m.check(r.ratio, s.ref_len ? s.sys_len / s.ref_len : 0, `${where} ratio`);
        if (s.signature !== undefined) expect(sacreBleuSignature(refs, opts), where).toBe(s.signature);
      }
      expect(m.failures).toEqual([]);
    });
  }
});

describe('sacrebleu sentence_bleu vs text/bleu.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: every pair x ${golden.sacrebleu_sentence_configs.length} configurations, and the statistics`, () => {
      const m = new Mismatches();
      for (const p of c.pairs) {
        golden.sacrebleu_sentence_configs.forEach((s, j) => {
          const r = sacreSentenceBleu(p.hyp, p.refs, { tokenize: s.tokenize, lowercase: s.lowercase, smooth: s.smooth_method });
          m.check(r.score, p.sacrebleu_sentence[j]!, `${p.id} ${s.tokenize}/${s.lowercase ? 'lc' : 'cased'}/${s.smooth_method}`);
        });
        for (const tok of ['13a', 'none'] as const) {
          expect(sacreBleuStats(p.hyp, p.refs, { tokenize: tok }), `${p.id} ${tok}`).toEqual(p.sacrebleu_sentence_stats[tok]);
        }
      }
      expect(m.failures).toEqual([]);
    });
  }
});

describe('pycocoBleu: hand-computed cases', () => {
  const tiny = 1e-15;
  const small = 1e-9;
  it('identical 4-token pair: products of (c + tiny)/(g + small) and a brevity penalty, never exactly 1', () => {
    const r = pycocoBleu(['a b c d'], [['a b c d']]);
    // ratio = (4 + tiny)/(4 + small) < 1, so even an identical pair gets exp(1 - 1/ratio) ≈ 1 - 2.5e-10.
    const bp = Math.exp(1 - 1 / ((4 + tiny) / (4 + small)));
    let b = 1;
    const expected = [4, 3, 2, 1].map((g, k) => {
      b *= (g + tiny) / (g + small);
      return b ** (1 / (k + 1)) * bp;
    });
    r.corpus.forEach((v, k) => expect(v).toBeCloseTo(expected[k]!, 15));
    expect(r.corpus[3]).toBeLessThan(1);
    expect(r.segments.map((s) => s[0])).toEqual(r.corpus);
  });
  it('empty hypothesis: 0 for every order (brevity penalty exp(1 - 1/ratio) underflows)', () => {
    const r = pycocoBleu(['', 'a b'], [['a b c'], ['a b']]);
    expect(r.segments.map((s) => s[0])).toEqual([0, 0, 0, 0]);
    expect(r.testlen).toBe(2);
    expect(r.reflen).toBe(5);
  });
  it('closest reference length: ties go to the shorter', () => {
    // hyp has 3 tokens; references of 2 and 4 tokens are equally close, so reflen = 2 (no brevity penalty).
    const r = pycocoBleu(['a b c'], [['a b c d', 'a b']]);
    expect(r.reflen).toBe(2);
    const r2 = pycocoBleu(['a b c'], [['a b', 'a b c d']]);
    expect(r2.reflen).toBe(2);
  });
  it('clipping: "the the the" against "the cat" matches one unigram', () => {
    const r = pycocoBleu(['the the the'], [['the cat']]);
    expect(r.segments[0]![0]).toBeCloseTo((1 + tiny) / (3 + small), 15);
  });
  it('splits on any Python whitespace (tabs, newlines, U+3000) but not on U+FEFF', () => {
    const a = pycocoBleu(['a\tb\nc\u3000d'], [['a b c d']]);
    expect(a.testlen).toBe(4);
    const b = pycocoBleu(['a\ufeffb'], [['a b']]);
    expect(b.testlen).toBe(1);
  });
  it('rejects mismatched lengths, an empty corpus and a segment without references', () => {
    expect(() => pycocoBleu(['a'], [])).toThrow(/1 hypotheses but 0 reference lists/);
    expect(() => pycocoBleu([], [])).toThrow(/empty/);
    expect(() => pycocoBleu(['a'], [[]])).toThrow(/refs\[0\] must be a non-empty array/);
  });
});

describe('sacrebleu: hand-computed cases', () => {
  it('"the cat sat on the mat" vs "the cat is on the mat": precisions 5/6, 3/5, 1/4, exp-smoothed 4-gram', () => {
    const r = sacreBleu(['the cat sat on the mat'], [['the cat is on the mat']], { tokenize: 'none' });
    expect(r.counts).toEqual([5, 3, 1, 0]);
    expect(r.totals).toEqual([6, 5, 4, 3]);
    const p = [(100 * 5) / 6, (100 * 3) / 5, (100 * 1) / 4, 100 / (2 * 3)];
    expect(r.precisions).toEqual(p);
    expect(r.score).toBeCloseTo(Math.exp((Math.log(p[0]!) + Math.log(p[1]!) + Math.log(p[2]!) + Math.log(p[3]!)) / 4), 12);
  });
  it('brevity penalty exp(1 - r/c) when the hypothesis is shorter; ratio = c/r', () => {
    const r = sacreBleu(['a b c d'], [['a b c d e f']], { tokenize: 'none' });
    expect(r.bp).toBeCloseTo(Math.exp(1 - 6 / 4), 15);
    expect(r.ratio).toBeCloseTo(4 / 6, 15);
  });
  it('identical strings score 100 (up to exp(log) rounding); an empty hypothesis scores 0', () => {
    expect(sacreBleu(['No acute process.'], [['No acute process.']]).score).toBeCloseTo(100, 10);
    const e = sacreBleu([''], [['No acute process.']]);
    expect([e.score, e.bp, e.sysLen, e.refLen]).toEqual([0, 0, 0, 4]);
    expect(e.ratio).toBe(0);
  });
  it('sentence BLEU uses the effective order: a one-token exact match is 100, the corpus score (order 4) is not', () => {
    expect(sacreSentenceBleu('normal', ['normal']).score).toBeCloseTo(100, 10);
    expect(sacreBleu(['normal'], [['normal']]).score).toBeLessThan(100);
  });
  it('smoothing: floor uses 0.1/total, add-k adds k for n > 1, none gives 0 with a zero order', () => {
    const floor = computeBleu([2, 0, 0, 0], [4, 3, 2, 1], 4, 4, { smooth: 'floor' });
    expect(floor.precisions).toEqual([50, (100 * 0.1) / 3, (100 * 0.1) / 2, (100 * 0.1) / 1]);
    const addk = computeBleu([2, 0, 0, 0], [4, 3, 2, 1], 4, 4, { smooth: 'add-k' });
    expect([addk.counts, addk.totals]).toEqual([
      [2, 1, 1, 1],
      [4, 4, 3, 2],
    ]);
    expect(computeBleu([2, 0, 0, 0], [4, 3, 2, 1], 4, 4, { smooth: 'none' }).score).toBe(0);
    // an order with no n-grams stops the loop; without effective order the missing precisions count as log 0.
    expect(computeBleu([1, 0, 0, 0], [1, 0, 0, 0], 1, 1, { smooth: 'exp', effectiveOrder: true }).score).toBeCloseTo(100, 10);
  });
  it('signature: nrefs:var for varying reference counts, smoothing value printed with two decimals', () => {
    expect(sacreBleuSignature([['a'], ['b', 'c']], { smooth: 'floor' })).toBe('nrefs:var|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0');
    expect(sacreBleuSignature([['a', 'b']], { smooth: 'add-k', lowercase: true, tokenize: 'none' }, true)).toBe(
      'nrefs:2|case:lc|eff:yes|tok:none|smooth:add-k[1.00]|version:2.6.0',
    );
  });
  it('rejects unknown tokenizers and smoothing methods with the allowed values', () => {
    expect(() => sacreBleu(['a'], [['a']], { tokenize: 'zh' as SacreTokenizer })).toThrow(/tokenize must be one of '13a', 'none', 'intl', got "zh"/);
    expect(() => sacreBleu(['a'], [['a']], { smooth: 'foo' as SmoothMethod })).toThrow(/smooth must be one of/);
  });
});

describe('sacrebleu tokenizers (outputs recorded from sacrebleu 2.6.0 Tokenizer13a / TokenizerV14International)', () => {
  // [input, 13a, intl]: produced by calling sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(s) and
  // tokenizer_intl.TokenizerV14International()(s) in a Python 3.11 venv with sacrebleu==2.6.0.
  const cases: Array<[string, string, string]> = [
    ['Heart size &lt; normal &amp; lungs clear.', 'Heart size < normal & lungs clear .', 'Heart size & lt ; normal & amp ; lungs clear .'],
    ['&amp;lt; &quot;q&quot; &gt;', '< " q " >', '& amp ; lt ; & quot ; q & quot ; & gt ;'],
    ['ETT 4.5 cm; 10,000 units, 3-4 mm.', 'ETT 4.5 cm ; 10,000 units , 3 - 4 mm .', 'ETT 4.5 cm ; 10,000 units , 3-4 mm .'],
    ['a.b,c 1.5. x,2 T7-T8', 'a . b , c 1.5 . x , 2 T7 - T8', 'a . b , c 1.5 . x , 2 T7 - T8'],
    ['word<skipped>s broken-\nline\nnext', 'words brokenline next', 'word < skipped > s broken - line next'],
    ['Café-au-lait… naïve µm ×2 — 37 °C', 'Café-au-lait… naïve µm ×2 — 37 °C', 'Café - au - lait … naïve µm × 2 — 37 ° C'],
    ['(no effusion)... ?', '( no effusion ) . . . ?', '( no effusion ) . . . ?'],
    ['1.5.', '1.5 .', '1.5.'],
    ['x\u3000y\x1cz\u00a0w\ufeffv', 'x y z w\ufeffv', 'x y z w\ufeffv'],
    ['Dr. Smith, i.e. at 10:45 a.m.', 'Dr . Smith , i . e . at 10 : 45 a . m .', 'Dr . Smith , i . e . at 10:45 a . m .'],
  ];
  it.each(cases)('%j', (input, t13a, intl) => {
    expect(tokenize13a(input)).toBe(t13a);
    expect(tokenizeIntl(input)).toBe(intl);
  });
});

describe('Python str helpers', () => {
  it('isPySpace is Python 3.11 str.isspace() over every UTF-16 code unit', () => {
    // [c for c in range(0x110000) if chr(c).isspace()] in Python 3.11.7 (none is above U+FFFF).
    const py = [
      0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
      0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
    ];
    const ours: number[] = [];
    for (let c = 0; c <= 0xffff; c++) if (isPySpace(c)) ours.push(c);
    expect(ours).toEqual(py);
  });
  it('pySplit / pyStrip / pyRstrip behave like str.split() / strip() / rstrip()', () => {
    expect(pySplit('')).toEqual([]);
    expect(pySplit(' \t\n ')).toEqual([]);
    expect(pySplit('  a  b\x1cc\x85d ')).toEqual(['a', 'b', 'c', 'd']);
    expect(pySplit('a\ufeffb')).toEqual(['a\ufeffb']);
    expect(pyStrip('\u3000 a b \n')).toBe('a b');
    expect(pyRstrip(' a \u2029')).toBe(' a');
  });
});

describe('NgramTable', () => {
  it('counts n-grams per order in first-occurrence order, with ids shared across sentences and distinct across orders', () => {
    const t = new NgramTable();
    const [uni, bi, tri] = t.count(['a', 'b', 'a', 'b'], 3);
    expect([...uni!.values()]).toEqual([2, 2]);
    expect([...bi!.values()]).toEqual([2, 1]); // "a b" ×2, "b a" ×1
    expect([...tri!.values()]).toEqual([1, 1]);
    const ids = [...uni!.keys(), ...bi!.keys(), ...tri!.keys()];
    expect(new Set(ids).size).toBe(6);
    const [uni2, bi2] = t.count(['b', 'a'], 2);
    expect([...uni2!.keys()]).toEqual([...uni!.keys()].reverse());
    expect([...bi2!.keys()]).toEqual([[...bi!.keys()][1]]);
    expect(t.count([], 4).every((m) => m.size === 0)).toBe(true);
  });
});
