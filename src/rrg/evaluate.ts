/**
 * Evaluation of generated radiology reports against references under a named protocol (src/rrg/protocol.ts): every
 * metric's point estimate, a seeded bootstrap interval, and its metric card. Works on any model's text: no LibTorch.
 *
 * Bootstrap (the convention of the classification reports, src/eval/bootstrap.ts): resampling units are report pairs,
 * or patients when every pair carries a patient id (a drawn patient brings all of its pairs); `n` resamples drawn
 * with `mulberry32(seed)`, each represented by integer pair weights; every metric is recomputed on the same
 * resamples (paired), from per-pair sufficient statistics:
 * - corpus BLEU (sacrebleu, pycocoevalcap): the weighted sums of each pair's n-gram matches, totals and lengths, then
 *   the corpus formula — what sacrebleu's own `n_bootstrap` does;
 * - ROUGE-L, CIDEr-D, RadGraph: the weighted mean of the per-pair scores (CIDEr-D keeps the document frequencies of the
 *   full reference set);
 * - label F1: the weighted per-class counts (micro, macro) and the weighted mean of the per-report ratios (samples).
 * Summary: the point estimate on all pairs, the median and the percentile interval of the replicates (numpy's linear
 * percentile). A replicate where a statistic is undefined is skipped and counted.
 *
 * Labels: the labeler runs on the generated text and on the (first) reference; 14/5/4-class metrics read the
 * CheXbert columns (the phantom labeler maps Nodule → Lung Lesion; classes a labeler does not produce count as
 * blank), the phantom findings metrics read the phantom columns.
 */
import { mulberry32 } from '../data/random.js';
import { drawResample, PERCENTILE_METHOD, resamplingUnits } from '../eval/bootstrap.js';
import { CHEXBERT_14, CHEXBERT_5, selectColumns, type LabelCell, type LabelDiagnostic, type Labeler } from '../eval/labelers/types.js';
import { PHANTOM_CLASSES, PHANTOM_TO_CHEXBERT } from '../eval/labelers/phantom.js';
import { mean, pairwiseSum, percentileSorted } from '../eval/stats.js';
import { binarize, labelF1 } from '../eval/text/label-f1.js';
import { computeBleu, pycocoBleu, pycocoBleuFromStats, pycocoBleuStats, sacreBleu, sacreBleuStats } from '../eval/text/bleu.js';
import { ciderD } from '../eval/text/cider.js';
import { r2genClean } from '../eval/text/clean.js';
import { pycocoRougeLCorpus, rougeScoreLMulti } from '../eval/text/rouge.js';
import { radgraphPairReward, type RadGraphAnnotation } from '../eval/text/radgraph.js';
import type { ReportPair } from './pairs.js';
import { metricCard, phantomFindingMetrics, protocolMetrics, type LabelSet, type MetricCard, type MetricSpec, type ProtocolName } from './protocol.js';

/** The LLaVA-Rad F1-4 subset (`rrg_eval/factuality_utils.py` CONDITIONS_4). */
export const CHEXBERT_4: readonly string[] = ['Atelectasis', 'Pleural Effusion', 'Cardiomegaly', 'Support Devices'];
/** The phantom findings scored by the findings metrics. */
export const PHANTOM_FINDINGS: readonly string[] = PHANTOM_CLASSES.filter((c) => c !== 'No Finding');

export interface LabelSource {
  labeler: Labeler;
  /** Rows for the generated and reference texts, when the labels come from elsewhere (labels keyed by id). */
  rows?: { hyps: LabelCell[][]; refs: LabelCell[][] };
}

export interface EvaluateReportsOptions {
  /** @default 'cxformer' */
  protocol?: ProtocolName;
  /** The labeler for the label metrics; without one they are skipped (and said so). */
  labels?: LabelSource;
  /** RadGraph annotations of each pair's generated and reference text, in pair order. */
  radgraph?: { hyps: RadGraphAnnotation[]; refs: RadGraphAnnotation[]; source: string };
  /** Bootstrap resamples (0: none). @default 1000 */
  bootstrap?: number;
  /** @default 0 */
  seed?: number;
  /** @default 0.95 */
  level?: number;
  /** After each resample. */
  onProgress?: (done: number, total: number) => void;
}

export interface MetricInterval {
  median: number;
  lo: number;
  hi: number;
  nValid: number;
  nSkipped: number;
}

export interface ReportMetricResult {
  key: string;
  name: string;
  /** Point estimate on the protocol's scale (null when undefined, with `reason`). */
  value: number | null;
  reason?: string;
  interval: MetricInterval | null;
  card: MetricCard;
}

export interface PairScores {
  id: string;
  hypothesis: string;
  reference: string;
  /** rouge-score ROUGE-L F (raw text, no stemming), 0–1. */
  rougeL: number;
  labelsHyp?: (LabelCell)[];
  labelsRef?: (LabelCell)[];
}

export interface ReportEvaluation {
  protocol: ProtocolName;
  pairs: number;
  labeler: { name: string; version: string; classes: string[] } | null;
  bootstrap: { n: number; seed: number; level: number; unit: 'sample' | 'patient'; nUnits: number; percentile: string } | null;
  metrics: ReportMetricResult[];
  /** Metrics of the protocol that were not computed, and why. */
  skipped: { key: string; name: string; reason: string }[];
  /** Per-class precision/recall/F1 of the label metrics' class sets (uncertain negative), point estimates. */
  perClass: { set: string; classes: { name: string; precision: number; recall: number; f1: number; support: number }[] }[];
  /** Labeler diagnostics (sentences outside its grammar…), counted per kind, for generated and reference texts. */
  diagnostics: { hyps: Record<string, number>; refs: Record<string, number>; examples: LabelDiagnostic[] };
  perPair: PairScores[];
}

/**
 * A metric as a point estimate plus a replicate function of pair weights (NaN = undefined in that replicate); `r`
 * numbers the replicate, so metrics that share per-class counts compute them once per replicate.
 */
interface Aggregate {
  point: number;
  replicate(w: Float64Array, r: number): number;
}

/** Weighted per-class counts of one binarised label matrix pair, computed once per replicate. */
interface SharedCounts {
  r: number;
  tp: Float64Array;
  pred: Float64Array;
  truth: Float64Array;
}

function weightedMean(values: Float64Array, w: Float64Array): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    s += (w[i] as number) * (values[i] as number);
    n += w[i] as number;
  }
  return n > 0 ? s / n : Number.NaN;
}

function meanAggregate(values: readonly number[]): Aggregate {
  const v = Float64Array.from(values);
  return { point: mean(v), replicate: (w) => weightedMean(v, w) };
}

/** Per-pair statistic vectors summed with weights. */
function weightedSums(stats: readonly (readonly number[])[], w: Float64Array): number[] {
  const out = new Array<number>(stats[0]?.length ?? 0).fill(0);
  stats.forEach((s, i) => {
    const wi = w[i] as number;
    if (wi === 0) return;
    for (let j = 0; j < s.length; j++) out[j]! += wi * (s[j] as number);
  });
  return out;
}

/** Binarised label matrices of one class set and policy, for fast weighted counts. */
function labelAggregate(refs: LabelCell[][], hyps: LabelCell[][], classes: readonly string[], m: MetricSpec, cache: Map<string, SharedCounts>): Aggregate {
  const uncertain = m.uncertain ?? 'negative';
  const full = labelF1(refs, hyps, { classes, uncertain });
  const stat = m.statistic ?? 'f1';
  const avg = m.averaging ?? 'micro';
  const point = full[avg][stat];
  const n = refs.length;
  const K = classes.length;
  const yt = new Uint8Array(n * K);
  const yp = new Uint8Array(n * K);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < K; k++) {
      yt[i * K + k] = binarize(refs[i]![k]!, uncertain);
      yp[i * K + k] = binarize(hyps[i]![k]!, uncertain);
    }
  }
  // Per-report ratios for the samples average (they do not depend on the weights).
  const sample = Float64Array.from({ length: n }, (_, i) => {
    let t = 0;
    let p = 0;
    let y = 0;
    for (let k = 0; k < K; k++) {
      t += yt[i * K + k]! & yp[i * K + k]!;
      p += yp[i * K + k]!;
      y += yt[i * K + k]!;
    }
    const pr = p === 0 ? 0 : t / p;
    const rc = y === 0 ? 0 : t / y;
    return stat === 'precision' ? pr : stat === 'recall' ? rc : p + y === 0 ? 0 : (2 * t) / (p + y);
  });
  const ratio = (tp: number, pred: number, truth: number): number => {
    if (stat === 'precision') return pred === 0 ? 0 : tp / pred;
    if (stat === 'recall') return truth === 0 ? 0 : tp / truth;
    return pred + truth === 0 ? 0 : (2 * tp) / (pred + truth);
  };
  const key = `${classes.join('|')}#${uncertain}`;
  let shared = cache.get(key);
  if (!shared) {
    shared = { r: -1, tp: new Float64Array(K), pred: new Float64Array(K), truth: new Float64Array(K) };
    cache.set(key, shared);
  }
  const counts = shared;
  const replicate = (w: Float64Array, r: number): number => {
    if (avg === 'samples') return weightedMean(sample, w);
    const { tp, pred, truth } = counts;
    if (counts.r !== r) fill(w);
    counts.r = r;
    if (avg === 'micro') return ratio(pairwiseSum(tp), pairwiseSum(pred), pairwiseSum(truth));
    return pairwiseSum(Float64Array.from({ length: K }, (_, k) => ratio(tp[k]!, pred[k]!, truth[k]!))) / K;
  };
  const fill = (w: Float64Array): void => {
    const { tp, pred, truth } = counts;
    tp.fill(0);
    pred.fill(0);
    truth.fill(0);
    for (let i = 0; i < n; i++) {
      const wi = w[i] as number;
      if (wi === 0) continue;
      for (let k = 0; k < K; k++) {
        const a = yt[i * K + k]!;
        const b = yp[i * K + k]!;
        tp[k]! += wi * (a & b);
        pred[k]! += wi * b;
        truth[k]! += wi * a;
      }
    }
  };
  return { point, replicate };
}

/** Whether a labeler's columns are the phantom label columns (the phantom labeler, or phantom labels imported). */
export function isPhantomColumns(classes: readonly string[]): boolean {
  return classes.length === PHANTOM_CLASSES.length && classes.every((c, i) => c === PHANTOM_CLASSES[i]);
}

function classesOf(set: LabelSet): readonly string[] {
  return set === '14' ? CHEXBERT_14 : set === '5' ? CHEXBERT_5 : set === '4' ? CHEXBERT_4 : PHANTOM_FINDINGS;
}

/** Label rows of the labeler's output in the columns of a class set (phantom → CheXbert mapping when needed). */
function rowsFor(rows: LabelCell[][], from: readonly string[], set: LabelSet): LabelCell[][] {
  const to = classesOf(set);
  if (set !== 'findings' && isPhantomColumns(from)) {
    const renamed = from.map((c) => PHANTOM_TO_CHEXBERT[c] ?? c);
    return selectColumns(rows, renamed, to);
  }
  return selectColumns(rows, from, to);
}

function countKinds(ds: readonly LabelDiagnostic[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of ds) out[d.kind] = (out[d.kind] ?? 0) + 1;
  return out;
}

/**
 * Scores the pairs under a protocol.
 * @throws RangeError on an empty pair list or a RadGraph list of another length
 */
export function evaluateReports(pairs: readonly ReportPair[], opts: EvaluateReportsOptions = {}): ReportEvaluation {
  if (pairs.length === 0) throw new RangeError('evaluateReports: no report pairs');
  const protocol = opts.protocol ?? 'cxformer';
  const hyps = pairs.map((p) => p.hypothesis);
  const refs = pairs.map((p) => p.references);
  const cleanHyps = hyps.map(r2genClean);
  const cleanRefs = refs.map((rs) => rs.map(r2genClean));
  const labeler = opts.labels?.labeler;
  const isPhantom = labeler !== undefined && isPhantomColumns(labeler.classes);
  let specs = protocolMetrics(protocol);
  if (isPhantom) specs = [...specs, ...phantomFindingMetrics(specs[0]?.scale ?? 100)];
  const skipped: ReportEvaluation['skipped'] = [];

  // Labels of both sides, once.
  let labelRows: { hyps: LabelCell[][]; refs: LabelCell[][] } | undefined;
  const diagnostics: ReportEvaluation['diagnostics'] = { hyps: {}, refs: {}, examples: [] };
  if (opts.labels) {
    if (opts.labels.rows) labelRows = opts.labels.rows;
    else {
      const l = opts.labels.labeler;
      const firstRefs = refs.map((r) => r[0] as string);
      if ('analyze' in l && typeof (l as { analyze?: unknown }).analyze === 'function') {
        const an = (l as unknown as { analyze(t: readonly string[]): { rows: LabelCell[][]; diagnostics: LabelDiagnostic[] } }).analyze;
        const h = an(hyps);
        const r = an(firstRefs);
        labelRows = { hyps: h.rows, refs: r.rows };
        diagnostics.hyps = countKinds(h.diagnostics);
        diagnostics.refs = countKinds(r.diagnostics);
        diagnostics.examples = h.diagnostics.slice(0, 20);
      } else labelRows = { hyps: l.label(hyps), refs: l.label(firstRefs) };
    }
    if (labelRows.hyps.length !== pairs.length || labelRows.refs.length !== pairs.length) {
      throw new RangeError(`evaluateReports: the labeler returned ${labelRows.hyps.length} / ${labelRows.refs.length} rows for ${pairs.length} pairs`);
    }
  }
  if (opts.radgraph && (opts.radgraph.hyps.length !== pairs.length || opts.radgraph.refs.length !== pairs.length)) {
    throw new RangeError(`evaluateReports: RadGraph annotations for ${opts.radgraph.hyps.length} / ${opts.radgraph.refs.length} reports, but ${pairs.length} pairs`);
  }
  const radgraphPairs = opts.radgraph ? opts.radgraph.hyps.map((h, i) => radgraphPairReward(h, opts.radgraph!.refs[i]!)) : undefined;

  const aggregates: { spec: MetricSpec; agg: Aggregate }[] = [];
  const countCache = new Map<string, SharedCounts>();
  // pycocoevalcap BLEU is only ever computed on the R2Gen-cleaned text (the r2gen protocol).
  let pycoco: { stats: number[][]; corpus: number[] } | undefined;
  for (const m of specs) {
    const H = m.text === 'r2gen-clean' ? cleanHyps : hyps;
    const R = m.text === 'r2gen-clean' ? cleanRefs : refs;
    switch (m.kind) {
      case 'bleu-sacre': {
        const o = { tokenize: m.sacre?.tokenize ?? '13a', lowercase: m.sacre?.lowercase ?? false, smooth: m.sacre?.smooth ?? 'exp', maxNgramOrder: m.order ?? 4 } as const;
        const stats = H.map((h, i) => sacreBleuStats(h, R[i] as string[], o));
        const N = o.maxNgramOrder;
        const score = (s: readonly number[]) => computeBleu(s.slice(2, 2 + N), s.slice(2 + N), s[0]!, s[1]!, { smooth: o.smooth, maxNgramOrder: N }).score / 100;
        aggregates.push({ spec: m, agg: { point: sacreBleu(H, R, o).score / 100, replicate: (w) => score(weightedSums(stats, w)) } });
        break;
      }
      case 'bleu-pycoco': {
        // BLEU-1..4 share one set of per-pair statistics and one corpus score (computed for the first of them).
        const order = m.order ?? 4;
        pycoco ??= { stats: H.map((h, i) => pycocoBleuStats(h, R[i] as string[], 4)), corpus: pycocoBleu(H, R).corpus };
        const { stats, corpus } = pycoco;
        aggregates.push({ spec: m, agg: { point: corpus[order - 1] as number, replicate: (w) => pycocoBleuFromStats(weightedSums(stats, w), 4)[order - 1] as number } });
        break;
      }
      case 'rouge-score':
        aggregates.push({ spec: m, agg: meanAggregate(H.map((h, i) => rougeScoreLMulti(h, R[i] as string[], { stemmer: m.stemmer ?? false }).fmeasure)) });
        break;
      case 'rouge-pycoco':
        aggregates.push({ spec: m, agg: meanAggregate(pycocoRougeLCorpus(H, R).segments) });
        break;
      case 'cider-d': {
        const c = ciderD(H, R);
        const seg = Float64Array.from(c.segments);
        aggregates.push({ spec: m, agg: { point: c.corpus, replicate: (w) => weightedMean(seg, w) } });
        break;
      }
      case 'label-f1': {
        if (!labelRows || !labeler) {
          skipped.push({ key: m.key, name: m.name, reason: 'no labeler (--labeler phantom|rules|labels:FILE)' });
          break;
        }
        const set = m.labels ?? '14';
        aggregates.push({ spec: m, agg: labelAggregate(rowsFor(labelRows.refs, labeler.classes, set), rowsFor(labelRows.hyps, labeler.classes, set), classesOf(set), m, countCache) });
        break;
      }
      case 'radgraph': {
        if (!radgraphPairs) {
          skipped.push({ key: m.key, name: m.name, reason: 'no RadGraph annotations (--radgraph HYP.json,REF.json)' });
          break;
        }
        aggregates.push({ spec: m, agg: meanAggregate(radgraphPairs.map((p) => p[m.level ?? 'partial'])) });
        break;
      }
    }
  }

  // Bootstrap: one set of resamples for every metric.
  const nBoot = opts.bootstrap ?? 1000;
  const seed = opts.seed ?? 0;
  const level = opts.level ?? 0.95;
  const patients = pairs.every((p) => p.patient !== undefined) ? pairs.map((p) => p.patient as string) : undefined;
  const units = resamplingUnits(pairs.length, patients);
  const reps = aggregates.map(() => new Float64Array(nBoot));
  if (nBoot > 0) {
    const rnd = mulberry32(seed);
    const w = new Float64Array(pairs.length);
    for (let r = 0; r < nBoot; r++) {
      drawResample(rnd, units, w);
      aggregates.forEach((a, k) => {
        reps[k]![r] = a.agg.replicate(w, r);
      });
      opts.onProgress?.(r + 1, nBoot);
    }
  }
  const metrics: ReportMetricResult[] = aggregates.map(({ spec, agg }, k) => {
    const s = spec.scale;
    const res: ReportMetricResult = { key: spec.key, name: spec.name, value: Number.isFinite(agg.point) ? agg.point * s : null, interval: null, card: metricCard(spec, labeler ? `${labeler.name} ${labeler.version}` : undefined) };
    if (res.value === null) res.reason = 'undefined on these pairs';
    if (nBoot > 0) {
      const valid = Array.from(reps[k]!).filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
      if (valid.length > 0) {
        res.interval = {
          median: percentileSorted(valid, 50) * s,
          lo: percentileSorted(valid, (100 * (1 - level)) / 2) * s,
          hi: percentileSorted(valid, (100 * (1 + level)) / 2) * s,
          nValid: valid.length,
          nSkipped: nBoot - valid.length,
        };
      }
    }
    return res;
  });

  const perClass: ReportEvaluation['perClass'] = [];
  if (labelRows && labeler) {
    const sets: LabelSet[] = isPhantom ? ['findings', '14'] : ['14'];
    for (const set of sets) {
      const r = labelF1(rowsFor(labelRows.refs, labeler.classes, set), rowsFor(labelRows.hyps, labeler.classes, set), { classes: classesOf(set), uncertain: 'negative' });
      perClass.push({ set: set === 'findings' ? 'phantom findings' : `CheXbert ${set}`, classes: r.perClass.map((c) => ({ name: c.name, precision: c.precision, recall: c.recall, f1: c.f1, support: c.support })) });
    }
  }
  const perPair: PairScores[] = pairs.map((p, i) => {
    const row: PairScores = { id: p.id, hypothesis: p.hypothesis, reference: p.references[0] as string, rougeL: rougeScoreLMulti(p.hypothesis, p.references).fmeasure };
    if (labelRows) {
      row.labelsHyp = labelRows.hyps[i] as LabelCell[];
      row.labelsRef = labelRows.refs[i] as LabelCell[];
    }
    return row;
  });
  return {
    protocol,
    pairs: pairs.length,
    labeler: labeler ? { name: labeler.name, version: labeler.version, classes: [...labeler.classes] } : null,
    bootstrap: nBoot > 0 ? { n: nBoot, seed, level, unit: patients ? 'patient' : 'sample', nUnits: units.length, percentile: PERCENTILE_METHOD } : null,
    metrics,
    skipped,
    perClass,
    diagnostics,
    perPair,
  };
}
