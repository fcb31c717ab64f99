/**
 * text/cross_package.json: the same corpora scored by each package and convention (BLEU-4 ×100). Checks that each
 * implementation here lands on its own package's number, and the documented relations between conventions.
 */
import { describe, expect, it } from 'vitest';

import { pycocoBleu, sacreBleu } from '../../src/eval/text/bleu.js';
import { pycocoRougeL, rougeScoreL } from '../../src/eval/text/rouge.js';
import { Mismatches, textGolden } from './text-golden.js';

interface CrossCorpus {
  corpus: string;
  pairs: number;
  pycoco_raw_bleu4_x100: number;
  pycoco_ptb_bleu4_x100: number;
  sacrebleu_none_none_on_ptb_text: number;
  sacrebleu_none_exp_on_ptb_text: number;
  sacrebleu_13a_exp: number;
  sacrebleu_13a_lc_exp: number;
  sacrebleu_none_exp: number;
  sacrebleu_none_lc_exp: number;
}
interface Pair {
  hyp: string;
  refs: string[];
  ptb_hyp?: string;
  ptb_refs?: string[];
}

const cross = textGolden<{ corpora: CrossCorpus[] }>('cross_package');
const bleu = textGolden<{ corpora: Array<{ name: string; pairs: Pair[] }> }>('bleu');

describe('cross-package BLEU-4 (x100) vs text/cross_package.json', () => {
  for (const c of cross.corpora) {
    it(`${c.corpus}: pycoco raw/PTB, sacrebleu 13a/none (cased, lower-cased), sacrebleu none on PTB text`, () => {
      const pairs = bleu.corpora.find((b) => b.name === c.corpus)?.pairs;
      expect(pairs?.length, `bleu.json corpus ${c.corpus}`).toBe(c.pairs);
      const ps = pairs!;
      const hyps = ps.map((p) => p.hyp);
      const refs = ps.map((p) => p.refs);
      const ptbHyps = ps.map((p) => p.ptb_hyp!);
      const ptbRefs = ps.map((p) => p.ptb_refs!);
      const m = new Mismatches();
      m.check(pycocoBleu(hyps, refs).corpus[3]! * 100, c.pycoco_raw_bleu4_x100, 'pycoco raw');
      m.check(pycocoBleu(ptbHyps, ptbRefs).corpus[3]! * 100, c.pycoco_ptb_bleu4_x100, 'pycoco ptb');
      m.check(sacreBleu(ptbHyps, ptbRefs, { tokenize: 'none', smooth: 'none' }).score, c.sacrebleu_none_none_on_ptb_text, 'sacre none/none on PTB');
      m.check(sacreBleu(ptbHyps, ptbRefs, { tokenize: 'none' }).score, c.sacrebleu_none_exp_on_ptb_text, 'sacre none/exp on PTB');
      m.check(sacreBleu(hyps, refs).score, c.sacrebleu_13a_exp, 'sacre 13a');
      m.check(sacreBleu(hyps, refs, { lowercase: true }).score, c.sacrebleu_13a_lc_exp, 'sacre 13a lc');
      m.check(sacreBleu(hyps, refs, { tokenize: 'none' }).score, c.sacrebleu_none_exp, 'sacre none');
      m.check(sacreBleu(hyps, refs, { tokenize: 'none', lowercase: true }).score, c.sacrebleu_none_lc_exp, 'sacre none lc');
      expect(m.failures).toEqual([]);
    });
  }

  it('pycoco on pre-tokenised text equals sacrebleu tokenize=none x100 up to its tiny/small terms (1e-9), when every order has a match', () => {
    for (const c of cross.corpora.filter((x) => x.sacrebleu_none_none_on_ptb_text > 0)) {
      expect(Math.abs(c.pycoco_ptb_bleu4_x100 - c.sacrebleu_none_none_on_ptb_text), c.corpus).toBeLessThan(1e-8 * 100);
    }
  });
});

describe('conventions that differ between packages on the same text', () => {
  it('empty vs empty ROUGE-L: pycoco 1.0, rouge-score 0', () => {
    expect(pycocoRougeL('', [''])).toBe(1);
    expect(rougeScoreL('', '').fmeasure).toBe(0);
  });
  it('pycoco keeps punctuation attached on raw text; 13a splits it', () => {
    const raw = pycocoBleu(['No pleural effusion is seen.'], [['No pleural effusion is seen .']]);
    expect(raw.segments[0]![0]).toBeCloseTo((4 + 1e-15) / (5 + 1e-9) * Math.exp(1 - 1 / ((5 + 1e-15) / (6 + 1e-9))), 12); // "seen." ≠ "seen"
    expect(sacreBleu(['No pleural effusion is seen.'], [['No pleural effusion is seen .']]).score).toBeCloseTo(100, 10);
  });
});
