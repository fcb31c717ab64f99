/**
 * Named evaluation protocols for generated radiology reports: which metrics, computed how, so that a number can be
 * compared with a paper's. The same four reports score BLEU-4 0.20, 0.37, 30.2 or 37.2 under four common conventions
 * (pycocoevalcap on raw vs R2Gen-cleaned text, sacrebleu case-sensitive vs lowercase); every number cxformer prints
 * therefore carries a metric card naming its implementation, tokenisation, case, averaging, uncertainty policy and
 * labeler (docs/report-generation.md).
 *
 * Presets
 * - `cxformer`: what CXformer's report-generation table most plausibly used — the LLaVA-Rad evaluation script
 *   (microsoft/LLaVA-Rad `llava/eval/rrg_eval/run.py`, read in the fork pradyunramesh/LLaVA-Rad): BLEU-4 = sacrebleu
 *   `BLEU()` corpus score (13a tokenisation, case-sensitive, exp smoothing, 0–100); ROUGE-L = rouge-score `rougeL`
 *   F-measure without stemming (`rrg_eval/rouge.py`: `use_stemmer=False`), mean over reports; RG_ER = RadGraph reward
 *   "partial"; F1-14 / F1-5 = **macro** F1 over the 14 CheXbert observations / the 5-class subset with uncertain counted
 *   negative (`factuality_utils.map_to_binary(mode="rrg")`), micro F1 beside them. Macro is an inference (CXformer's
 *   F1-14 ≪ F1-5 matches macro, not micro, averaging); LLaVA-Rad's unseeded bootstrap medians are replaced by the point
 *   estimate and a seeded bootstrap interval.
 * - `llava-rad`: every number `run.py` prints: BLEU-1 and BLEU-4 (sacrebleu), ROUGE-L, F1-RadGraph (partial) and the
 *   twelve CheXbert F1 variants: micro/macro × 14/5/4 classes × uncertain negative ("F1-14") / positive ("F1-14+").
 * - `r2gen`: the R2Gen family (cuhksz-nlp/R2Gen `modules/metrics.py`, `modules/tokenizers.py`): the texts cleaned by
 *   R2Gen's `clean_report_mimic_cxr`, then pycocoevalcap BLEU-1..4, ROUGE-L (β = 1.2) and CIDEr-D, on the 0–1 scale those
 *   papers print; clinical efficacy as micro and macro precision/recall/F1 over the 14 observations, uncertain negative.
 *   (METEOR needs pycocoevalcap's Java jar and is not computed.)
 * - `all`: the union of the three (each metric once).
 * With the `phantom` labeler every protocol also reports the phantom findings' clinical efficacy (micro/macro F1 over
 * Cardiomegaly, Pleural Effusion, Nodule, Pneumothorax; uncertain negative): on phantoms a constant "normal" report
 * already scores high BLEU/ROUGE, so the label F1 is the signal.
 */

/** How a metric is computed. */
export type MetricKind = 'bleu-pycoco' | 'bleu-sacre' | 'rouge-score' | 'rouge-pycoco' | 'cider-d' | 'label-f1' | 'radgraph';

/** Label subsets of the label F1 metrics. */
export type LabelSet = '14' | '5' | '4' | 'findings';

export type Averaging = 'micro' | 'macro' | 'samples';

/** One metric of a protocol. */
export interface MetricSpec {
  /** Unique key in report.json. */
  key: string;
  /** Display name. */
  name: string;
  kind: MetricKind;
  /** Text preprocessing before tokenisation: none, or R2Gen's cleaner. */
  text: 'raw' | 'r2gen-clean';
  /** The value is multiplied by this (1 or 100) for display and in report.json. */
  scale: 1 | 100;
  /** BLEU: the n-gram order reported (cumulative BLEU-n). */
  order?: number;
  /** sacrebleu options. */
  sacre?: { tokenize: '13a' | 'none'; lowercase: boolean; smooth: 'exp' | 'floor' | 'add-k' | 'none' };
  /** rouge-score: Porter stemming. */
  stemmer?: boolean;
  /** Label F1: class set, averaging, the statistic, uncertain policy. */
  labels?: LabelSet;
  averaging?: Averaging;
  statistic?: 'f1' | 'precision' | 'recall';
  uncertain?: 'positive' | 'negative';
  /** RadGraph reward level. */
  level?: 'simple' | 'partial' | 'complete';
}

export const PROTOCOLS = ['cxformer', 'llava-rad', 'r2gen', 'all'] as const;
export type ProtocolName = (typeof PROTOCOLS)[number];

const SACRE_DEFAULT = { tokenize: '13a', lowercase: false, smooth: 'exp' } as const;

function bleuSacre(order: number): MetricSpec {
  return { key: `bleu${order}`, name: `BLEU-${order}`, kind: 'bleu-sacre', text: 'raw', scale: 100, order, sacre: { ...SACRE_DEFAULT } };
}

function labelF1(labels: LabelSet, averaging: Averaging, uncertain: 'positive' | 'negative', scale: 1 | 100, statistic: 'f1' | 'precision' | 'recall' = 'f1'): MetricSpec {
  const plus = uncertain === 'positive' ? '+' : '';
  const avg = averaging === 'micro' ? 'Micro' : averaging === 'macro' ? 'Macro' : 'Samples';
  const stat = statistic === 'f1' ? 'F1' : statistic === 'precision' ? 'P' : 'R';
  const set = labels === 'findings' ? 'findings' : labels;
  return {
    key: `${statistic}_${set}_${averaging}${plus ? '_plus' : ''}`,
    name: labels === 'findings' ? `${avg}-${stat} (phantom findings)` : `${avg}-${stat}-${labels}${plus}`,
    kind: 'label-f1',
    text: 'raw',
    scale,
    labels,
    averaging,
    statistic,
    uncertain,
  };
}

const RADGRAPH_PARTIAL: MetricSpec = { key: 'rg_er', name: 'RG_ER (RadGraph partial)', kind: 'radgraph', text: 'raw', scale: 100, level: 'partial' };
const ROUGE_L: MetricSpec = { key: 'rougeL', name: 'ROUGE-L', kind: 'rouge-score', text: 'raw', scale: 100, stemmer: false };

/** The metrics of a protocol, in display order. RadGraph metrics are dropped later when no annotations are given. */
export function protocolMetrics(name: ProtocolName): MetricSpec[] {
  switch (name) {
    case 'cxformer':
      return [
        ROUGE_L,
        bleuSacre(4),
        RADGRAPH_PARTIAL,
        labelF1('14', 'macro', 'negative', 100),
        labelF1('5', 'macro', 'negative', 100),
        labelF1('14', 'micro', 'negative', 100),
        labelF1('5', 'micro', 'negative', 100),
      ];
    case 'llava-rad': {
      const ce: MetricSpec[] = [];
      for (const uncertain of ['negative', 'positive'] as const) {
        for (const averaging of ['micro', 'macro'] as const) for (const set of ['14', '5', '4'] as const) ce.push(labelF1(set, averaging, uncertain, 100));
      }
      return [...ce, RADGRAPH_PARTIAL, bleuSacre(1), bleuSacre(4), ROUGE_L];
    }
    case 'r2gen': {
      const m: MetricSpec[] = [1, 2, 3, 4].map((order) => ({ key: `pycoco_bleu${order}`, name: `BLEU-${order} (pycoco, R2Gen-cleaned)`, kind: 'bleu-pycoco', text: 'r2gen-clean', scale: 1, order }));
      m.push({ key: 'pycoco_rougeL', name: 'ROUGE-L (pycoco, R2Gen-cleaned)', kind: 'rouge-pycoco', text: 'r2gen-clean', scale: 1 });
      m.push({ key: 'cider_d', name: 'CIDEr-D (R2Gen-cleaned)', kind: 'cider-d', text: 'r2gen-clean', scale: 1 });
      for (const averaging of ['micro', 'macro'] as const) {
        for (const statistic of ['precision', 'recall', 'f1'] as const) {
          const s = labelF1('14', averaging, 'negative', 1, statistic);
          m.push({ ...s, key: `ce_${s.key}`, name: `CE ${s.name}` });
        }
      }
      return m;
    }
    case 'all': {
      const seen = new Set<string>();
      const out: MetricSpec[] = [];
      for (const p of ['cxformer', 'llava-rad', 'r2gen'] as const) {
        for (const m of protocolMetrics(p)) {
          if (seen.has(m.key)) continue;
          seen.add(m.key);
          out.push(m);
        }
      }
      return out;
    }
  }
}

/** The phantom findings' clinical-efficacy metrics (added with the phantom labeler). */
export function phantomFindingMetrics(scale: 1 | 100): MetricSpec[] {
  return [labelF1('findings', 'micro', 'negative', scale), labelF1('findings', 'macro', 'negative', scale)];
}

/** Parses a protocol name. */
export function parseProtocol(s: string): ProtocolName {
  if ((PROTOCOLS as readonly string[]).includes(s)) return s as ProtocolName;
  const e = new Error(`unknown protocol '${s}': expected one of ${PROTOCOLS.join(', ')}`) as Error & { code: string };
  e.code = 'CXF_ARG';
  throw e;
}

/** What a number is, in words: the metric card of report.json and report.md. */
export interface MetricCard {
  implementation: string;
  tokenisation: string;
  case: string;
  text: string;
  scale: string;
  averaging?: string;
  uncertain?: string;
  labeler?: string;
  smoothing?: string;
  note?: string;
}

/** The card of a metric (`labeler` = the labeler's name and version, for label metrics). */
export function metricCard(m: MetricSpec, labeler?: string): MetricCard {
  const text = m.text === 'raw' ? 'as given' : "R2Gen's clean_report_mimic_cxr (lowercase, punctuation stripped, sentences joined by ' . ')";
  const scale = m.scale === 100 ? '0-100' : m.kind === 'cider-d' ? 'CIDEr-D (x10 as pycocoevalcap)' : '0-1';
  switch (m.kind) {
    case 'bleu-sacre':
      return {
        implementation: `sacrebleu 2.6.0 BLEU(max_ngram_order=${m.order}) corpus score (cxformer port)`,
        tokenisation: m.sacre?.tokenize === '13a' ? 'sacrebleu 13a (mteval-v13a)' : 'none (whitespace)',
        case: m.sacre?.lowercase ? 'lowercased' : 'case-sensitive',
        text,
        scale,
        smoothing: m.sacre?.smooth ?? 'exp',
      };
    case 'bleu-pycoco':
      return {
        implementation: `pycocoevalcap 1.2 Bleu(4), cumulative BLEU-${m.order}, corpus (cxformer port)`,
        tokenisation: 'str.split() on the (cleaned) text',
        case: m.text === 'raw' ? 'as given' : 'lowercased by the cleaner',
        text,
        scale,
        smoothing: 'pycocoevalcap: +1e-15 matches, +1e-9 guesses; closest reference length',
      };
    case 'rouge-score':
      return {
        implementation: 'rouge-score 0.1.2 rougeL F-measure, mean over reports (cxformer port)',
        tokenisation: `rouge-score tokenize: [^a-z0-9]+ -> space${m.stemmer ? ', Porter stemming (nltk) of tokens longer than 3' : ', no stemming'}`,
        case: 'lowercased',
        text,
        scale,
      };
    case 'rouge-pycoco':
      return { implementation: 'pycocoevalcap 1.2 Rouge (beta 1.2), mean over reports (cxformer port)', tokenisation: 'split(" ")', case: 'lowercased by the cleaner', text, scale };
    case 'cider-d':
      return {
        implementation: 'pycocoevalcap 1.2 CIDEr-D (n 4, sigma 6, document frequencies from the evaluated references; cxformer port)',
        tokenisation: 'str.split() on the cleaned text',
        case: 'lowercased by the cleaner',
        text,
        scale,
        note: 'bootstrap replicates keep the document frequencies of the full reference set',
      };
    case 'label-f1': {
      const set = m.labels === '14' ? 'the 14 CheXbert observations' : m.labels === 'findings' ? 'the phantom findings (Cardiomegaly, Pleural Effusion, Nodule, Pneumothorax)' : `the CheXbert ${m.labels}-class subset`;
      return {
        implementation: `scikit-learn classification_report arithmetic (f1chexbert 0.0.2 / LLaVA-Rad rrg_eval), ${m.statistic ?? 'f1'}`,
        tokenisation: 'by the labeler',
        case: 'by the labeler',
        text,
        scale,
        averaging: `${m.averaging} over ${set}; a class without support and predictions counts 0 (zero_division=0)`,
        uncertain: m.uncertain === 'positive' ? 'uncertain counted positive (rrg+)' : 'uncertain counted negative (rrg)',
        ...(labeler !== undefined ? { labeler } : {}),
        note: 'reference labels are the labeler run on the reference text',
      };
    }
    case 'radgraph':
      return {
        implementation: `radgraph 0.1.18 rewards.py reward level '${m.level}' on imported annotations (cxformer port)`,
        tokenisation: 'by the RadGraph annotator',
        case: 'entities as annotated',
        text,
        scale,
        ...(labeler !== undefined ? { labeler } : {}),
        note: 'comparable only within one RadGraph model and package version',
      };
  }
}
