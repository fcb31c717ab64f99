/**
 * ROUGE-L against text/rouge.json (rouge-score 0.1.2 rougeL P/R/F per reference with and without the stemmer,
 * score_multi for multi-reference pairs, the tokenizer output of the edge corpus, the corpus mean F; pycocoevalcap
 * Rouge on raw and PTB-tokenised text, per pair and mean), hand-computed cases, and nltk's Porter stemmer on a word
 * list.
 */
import { describe, expect, it } from 'vitest';

import { porterStem } from '../../src/eval/text/porter.js';
import {
  lcsLength,
  pycocoRougeL,
  pycocoRougeLCorpus,
  rougeScoreL,
  rougeScoreLCorpus,
  rougeScoreLMulti,
  rougeScoreTokens,
} from '../../src/eval/text/rouge.js';
import { Mismatches, textGolden } from './text-golden.js';

type Prf = [number, number, number];
interface RougePair {
  id: string;
  hyp: string;
  refs: string[];
  ptb_hyp: string;
  ptb_refs: string[];
  pycoco_raw: number;
  pycoco_ptb: number;
  rouge_score_nostem: Prf[];
  rouge_score_stem: Prf[];
  rouge_score_nostem_multi?: Prf;
  rouge_score_stem_multi?: Prf;
  tokens_nostem?: { hyp: string[]; refs: string[][] };
  tokens_stem?: { hyp: string[]; refs: string[][] };
}
interface RougeCorpus {
  name: string;
  pycoco_raw_mean: number;
  pycoco_ptb_mean: number;
  rouge_score_mean_f_nostem: number;
  rouge_score_mean_f_stem: number;
  pairs: RougePair[];
}

const golden = textGolden<{ corpora: RougeCorpus[] }>('rouge');
const STEM = [
  ['nostem', false],
  ['stem', true],
] as const;

describe('rouge-score rougeL vs text/rouge.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: P/R/F per reference, score_multi, tokens, mean F (stemmer off and on)`, () => {
      const m = new Mismatches();
      let multi = 0;
      for (const [key, stemmer] of STEM) {
        for (const p of c.pairs) {
          p[`rouge_score_${key}`].forEach((e, j) => {
            const s = rougeScoreL(p.hyp, p.refs[j]!, { stemmer });
            m.check(s.precision, e[0], `${p.id} ref ${j} ${key} P`);
            m.check(s.recall, e[1], `${p.id} ref ${j} ${key} R`);
            m.check(s.fmeasure, e[2], `${p.id} ref ${j} ${key} F`);
          });
          const e = p[`rouge_score_${key}_multi`];
          if (e !== undefined) {
            multi++;
            const s = rougeScoreLMulti(p.hyp, p.refs, { stemmer });
            m.check(s.precision, e[0], `${p.id} multi ${key} P`);
            m.check(s.recall, e[1], `${p.id} multi ${key} R`);
            m.check(s.fmeasure, e[2], `${p.id} multi ${key} F`);
          }
          const t = p[`tokens_${key}`];
          if (t !== undefined) {
            expect(rougeScoreTokens(p.hyp, { stemmer }), `${p.id} hyp tokens ${key}`).toEqual(t.hyp);
            t.refs.forEach((r, j) => expect(rougeScoreTokens(p.refs[j]!, { stemmer }), `${p.id} ref ${j} tokens ${key}`).toEqual(r));
          }
        }
        const corpus = rougeScoreLCorpus(c.pairs.map((p) => p.hyp), c.pairs.map((p) => p.refs), { stemmer });
        m.check(corpus.meanF, c[`rouge_score_mean_f_${key}`], `mean F ${key}`);
      }
      expect(m.failures).toEqual([]);
      if (c.name === 'multi_ref') expect(multi).toBe(2 * c.pairs.length);
    });
  }
});

describe('pycocoevalcap Rouge vs text/rouge.json', () => {
  for (const c of golden.corpora) {
    it(`${c.name}: per pair and mean, raw and PTB-tokenised`, () => {
      const m = new Mismatches();
      const raw = pycocoRougeLCorpus(c.pairs.map((p) => p.hyp), c.pairs.map((p) => p.refs));
      const ptb = pycocoRougeLCorpus(c.pairs.map((p) => p.ptb_hyp), c.pairs.map((p) => p.ptb_refs));
      m.check(raw.corpus, c.pycoco_raw_mean, 'raw mean');
      m.check(ptb.corpus, c.pycoco_ptb_mean, 'ptb mean');
      c.pairs.forEach((p, i) => {
        m.check(raw.segments[i], p.pycoco_raw, `${p.id} raw`);
        m.check(ptb.segments[i], p.pycoco_ptb, `${p.id} ptb`);
      });
      expect(m.failures).toEqual([]);
    });
  }
});

describe('ROUGE-L: hand-computed cases', () => {
  it('LCS of a b c d / a c e d is 3: rouge-score P = R = F = 0.75; pycoco F_1.2 = 0.75', () => {
    expect(lcsLength(['a', 'b', 'c', 'd'], ['a', 'c', 'e', 'd'])).toBe(3);
    expect(rougeScoreL('a b c d', 'a c e d')).toEqual({ precision: 0.75, recall: 0.75, fmeasure: 0.75 });
    expect(pycocoRougeL('a b c d', ['a c e d'])).toBeCloseTo(0.75, 15);
  });
  it('P = 1/2, R = 1: rouge-score F = 2/3, pycoco F_β = (1 + 1.44)·0.5 / (1 + 1.44·0.5)', () => {
    expect(rougeScoreL('a b', 'a').fmeasure).toBeCloseTo(2 / 3, 15);
    expect(pycocoRougeL('a b', ['a'])).toBeCloseTo((2.44 * 0.5) / (1 + 1.44 * 0.5), 14);
  });
  it('identical strings: 1 in both packages', () => {
    expect(rougeScoreL('Heart size is normal.', 'Heart size is normal.')).toEqual({ precision: 1, recall: 1, fmeasure: 1 });
    expect(pycocoRougeL('Heart size is normal.', ['Heart size is normal.'])).toBe(1);
  });
  it('empty hypothesis or reference: 0; empty vs empty: rouge-score 0 but pycoco 1 ("".split(" ") = [""])', () => {
    expect(rougeScoreL('', 'No effusion.')).toEqual({ precision: 0, recall: 0, fmeasure: 0 });
    expect(rougeScoreL('No effusion.', '')).toEqual({ precision: 0, recall: 0, fmeasure: 0 });
    expect(rougeScoreL('', '')).toEqual({ precision: 0, recall: 0, fmeasure: 0 });
    expect(pycocoRougeL('', ['No effusion.'])).toBe(0);
    expect(pycocoRougeL('', [''])).toBe(1);
  });
  it('pycoco maximises P and R separately over references; rouge-score takes the best-F reference, first on ties', () => {
    // ref "a": P 1/2, R 1; ref "a b c d": P 1, R 1/2; pycoco combines P_max = 1 and R_max = 1.
    expect(pycocoRougeL('a b', ['a', 'a b c d'])).toBeCloseTo(1, 15);
    expect(rougeScoreLMulti('a b', ['a', 'a b c d'])).toEqual({ precision: 0.5, recall: 1, fmeasure: 2 / 3 });
    expect(rougeScoreLMulti('a b', ['a b c d', 'a'])).toEqual({ precision: 1, recall: 0.5, fmeasure: 2 / 3 });
  });
  it('pycoco splits on single spaces: a double space is an extra (empty) token', () => {
    // "a  b" → ["a", "", "b"]: LCS 2 with ["a", "b"], P = 2/3, R = 1.
    const p = 2 / 3;
    expect(pycocoRougeL('a  b', ['a b'])).toBeCloseTo((2.44 * p * 1) / (1 + 1.44 * p), 14);
  });
  it('rouge-score tokens: lower-case, non-[a-z0-9] runs split, non-ASCII letters dropped, stems only > 3 chars', () => {
    expect(rougeScoreTokens('Café-au-lait naïve T7-T8, 3.5cm')).toEqual(['caf', 'au', 'lait', 'na', 've', 't7', 't8', '3', '5cm']);
    expect(rougeScoreTokens('The lungs are CLEAR; effusions resolved', { stemmer: true })).toEqual(['the', 'lung', 'are', 'clear', 'effus', 'resolv']);
    expect(rougeScoreTokens('was has its', { stemmer: true })).toEqual(['was', 'has', 'its']);
  });
  it('corpus helpers reject mismatched lengths and empty reference lists', () => {
    expect(() => pycocoRougeLCorpus(['a', 'b'], [['a']])).toThrow(/2 hypotheses but 1 reference lists/);
    expect(() => rougeScoreLCorpus(['a'], [[]])).toThrow(/refs\[0\] must be a non-empty array/);
    expect(() => pycocoRougeL('a', [])).toThrow(/refs is empty/);
  });
});

describe('Porter stemmer (nltk 3.10.4, NLTK_EXTENSIONS)', () => {
  // [word, stem]: produced by `nltk.stem.porter.PorterStemmer().stem(word)` with nltk==3.10.4 in a Python 3.11 venv.
  // The list covers the irregular pool, every step's rules and nltk's extensions. (During development the port was
  // also compared with nltk on 317,859 distinct words: no difference.)
  const words: Array<[string, string]> = [
    ['skies', 'sky'],
    ['sky', 'sky'],
    ['dying', 'die'],
    ['lying', 'lie'],
    ['tying', 'tie'],
    ['news', 'news'],
    ['innings', 'inning'],
    ['outings', 'outing'],
    ['cannings', 'canning'],
    ['howe', 'howe'],
    ['proceed', 'proceed'],
    ['exceed', 'exceed'],
    ['succeed', 'succeed'],
    ['caresses', 'caress'],
    ['ponies', 'poni'],
    ['ties', 'tie'],
    ['caress', 'caress'],
    ['cats', 'cat'],
    ['feed', 'feed'],
    ['agreed', 'agre'],
    ['plastered', 'plaster'],
    ['bled', 'bled'],
    ['motoring', 'motor'],
    ['sing', 'sing'],
    ['conflated', 'conflat'],
    ['troubled', 'troubl'],
    ['sized', 'size'],
    ['hopping', 'hop'],
    ['tanned', 'tan'],
    ['falling', 'fall'],
    ['hissing', 'hiss'],
    ['fizzed', 'fizz'],
    ['failing', 'fail'],
    ['filing', 'file'],
    ['cried', 'cri'],
    ['died', 'die'],
    ['spied', 'spi'],
    ['happy', 'happi'],
    ['cry', 'cri'],
    ['by', 'by'],
    ['say', 'say'],
    ['relational', 'relat'],
    ['conditional', 'condit'],
    ['rational', 'ration'],
    ['valenci', 'valenc'],
    ['hesitanci', 'hesit'],
    ['digitizer', 'digit'],
    ['conformabli', 'conform'],
    ['radicalli', 'radic'],
    ['differentli', 'differ'],
    ['vileli', 'vile'],
    ['analogousli', 'analog'],
    ['vietnamization', 'vietnam'],
    ['predication', 'predic'],
    ['operator', 'oper'],
    ['feudalism', 'feudal'],
    ['decisiveness', 'decis'],
    ['hopefulness', 'hope'],
    ['callousness', 'callous'],
    ['formaliti', 'formal'],
    ['sensitiviti', 'sensit'],
    ['sensibiliti', 'sensibl'],
    ['hopefulli', 'hope'],
    ['analogi', 'analog'],
    ['archaeology', 'archaeolog'],
    ['triplicate', 'triplic'],
    ['formative', 'form'],
    ['formalize', 'formal'],
    ['electriciti', 'electr'],
    ['electrical', 'electr'],
    ['hopeful', 'hope'],
    ['goodness', 'good'],
    ['revival', 'reviv'],
    ['allowance', 'allow'],
    ['inference', 'infer'],
    ['airliner', 'airlin'],
    ['gyroscopic', 'gyroscop'],
    ['adjustable', 'adjust'],
    ['defensible', 'defens'],
    ['irritant', 'irrit'],
    ['replacement', 'replac'],
    ['adjustment', 'adjust'],
    ['dependent', 'depend'],
    ['adoption', 'adopt'],
    ['homologou', 'homolog'],
    ['communism', 'commun'],
    ['activate', 'activ'],
    ['angulariti', 'angular'],
    ['homologous', 'homolog'],
    ['effective', 'effect'],
    ['bowdlerize', 'bowdler'],
    ['probate', 'probat'],
    ['rate', 'rate'],
    ['cease', 'ceas'],
    ['controll', 'control'],
    ['roll', 'roll'],
    ['generously', 'gener'],
    ['fully', 'fulli'],
    ['cardiomegaly', 'cardiomegali'],
    ['opacities', 'opac'],
    ['atelectasis', 'atelectasi'],
    ['pneumothoraces', 'pneumothorac'],
    ['hyperinflated', 'hyperinfl'],
    ['unremarkable', 'unremark'],
    ['visualized', 'visual'],
    ['consolidations', 'consolid'],
    ['abnormalities', 'abnorm'],
    ['effusions', 'effus'],
    ['bilateral', 'bilater'],
    ['interstitial', 'interstiti'],
    ['prominence', 'promin'],
    ['degenerative', 'degen'],
    ['enlarged', 'enlarg'],
    ['sternotomy', 'sternotomi'],
    ['is', 'is'],
    ['as', 'as'],
    ['a', 'a'],
    ['aa', 'aa'],
    ['yyy', 'yyy'],
    ['ayy', 'ayi'],
    ['syzygy', 'syzygi'],
    ['queuing', 'queu'],
    ['xylophone', 'xylophon'],
  ];
  it(`stems ${words.length} words as nltk does`, () => {
    const wrong = words.filter(([w, s]) => porterStem(w) !== s).map(([w, s]) => `${w}: expected ${s}, got ${porterStem(w)}`);
    expect(wrong).toEqual([]);
  });
  it('lower-cases first and leaves words of one or two letters alone', () => {
    expect(porterStem('Effusions')).toBe('effus');
    expect(porterStem('as')).toBe('as');
  });
});
