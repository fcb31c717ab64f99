/**
 * Which training curves a run's metrics lines make: the lines are split into streams by their x axis (`iteration`
 * for pretraining; `step` for `{"kind":"step"}` lines; `epoch` for epoch lines), every numeric field (nested objects
 * flattened with `/`, as the TensorBoard tags of src/run/tensorboard.ts) becomes a series, and the series are grouped
 * into charts by what they measure: loss terms, the collapse indicator (H / ln K against 1.0 = uniform outputs),
 * probe and validation scores, learning rate, weight decay, teacher momentum and temperature, gradient norms,
 * throughput and stage timings; any other field gets a chart of its own. Keys are discovered, not listed, so a
 * field a trainer adds later is drawn too.
 */
import { COLLAPSE_DEFAULTS } from '../train/collapse.js';
import type { ChartSeries, RefLine } from './charts.js';
import type { MetricsRecord } from './run.js';

export interface ChartSpec {
  /** Stable id, e.g. `iteration-loss`. */
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  refLines: RefLine[];
  yScale: 'linear' | 'log';
}

export interface CurveOptions {
  /** Number of DINO prototypes K (pretraining): draws ln K on the loss and entropy charts. */
  prototypes?: number;
}

/** Fields that are axes or bookkeeping, not curves. */
const AXES = new Set(['iteration', 'step', 'steps', 'epoch', 'kind']);

interface Group {
  key: string;
  title: string;
  yLabel: string;
  yScale?: 'linear' | 'log';
  test: (k: string) => boolean;
}

/** Groups in the order the page shows them; a field goes to the first group whose test it passes. */
const GROUPS: readonly Group[] = [
  { key: 'loss', title: 'Loss terms', yLabel: 'loss', test: (k) => /loss/i.test(k) && !/^val/i.test(k) },
  { key: 'collapse', title: 'Collapse indicator: teacher entropy / ln K', yLabel: 'H / ln K', test: (k) => k === 'teacher_entropy_ratio' },
  { key: 'entropy', title: 'Teacher entropy', yLabel: 'nats', test: (k) => k === 'teacher_entropy' },
  {
    key: 'scores',
    title: 'Probe and validation scores',
    yLabel: 'score',
    test: (k) => (/^probe_/.test(k) && !/_(images|seconds)$/.test(k)) || (/^val/i.test(k) && !/loss/i.test(k)) || /^best(DiceAvg|_?score)/.test(k),
  },
  { key: 'val-loss', title: 'Validation loss', yLabel: 'loss', test: (k) => /^val/i.test(k) && /loss/i.test(k) },
  { key: 'lr', title: 'Learning rate', yLabel: 'learning rate', test: (k) => /^(lr|lastLayerLr|headLr|backboneLr|last_layer_lr)$/.test(k) },
  { key: 'wd', title: 'Weight decay', yLabel: 'weight decay', test: (k) => /^(wd|weight_decay|weightDecay)$/.test(k) },
  { key: 'momentum', title: 'Teacher momentum', yLabel: 'momentum', test: (k) => k === 'momentum' },
  { key: 'temperature', title: 'Teacher temperature', yLabel: 'temperature', test: (k) => /^teacher_?[Tt]emp$/.test(k) },
  { key: 'grad', title: 'Gradient norms', yLabel: 'L2 norm', yScale: 'log', test: (k) => /^grad_?norm/i.test(k) },
  { key: 'throughput', title: 'Throughput', yLabel: 'per second', test: (k) => /^(images_?per_?s|imagesPerS|it_per_s)$/.test(k) },
  { key: 'timing', title: 'Stage timings', yLabel: 'ms per iteration', test: (k) => /^ms_/.test(k) },
  { key: 'seconds', title: 'Wall time', yLabel: 'seconds', test: (k) => /(^|_)seconds$/.test(k) },
];

/** The x axis of a metrics line (see the module docs). */
export function xAxisOf(r: MetricsRecord): 'iteration' | 'step' | 'epoch' | null {
  if (typeof r.iteration === 'number') return 'iteration';
  if (r.kind === 'step' && typeof r.step === 'number') return 'step';
  if (typeof r.epoch === 'number') return 'epoch';
  if (typeof r.step === 'number') return 'step';
  return null;
}

/** Every numeric (or null) field of a line, nested objects flattened with `/`; axes left out. */
export function numericFields(r: MetricsRecord): Map<string, number | null> {
  const out = new Map<string, number | null>();
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      if (!prefix && AXES.has(k)) continue;
      const key = prefix + k;
      if (typeof v === 'number') out.set(key, v);
      else if (v === null) out.set(key, null);
      else if (typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${key}/`);
    }
  };
  walk(r, '');
  return out;
}

const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** A field outside the known groups whose value never changed (e.g. skipped batches 0): listed, not drawn. */
export interface ConstantField {
  key: string;
  value: number;
  axis: 'iteration' | 'step' | 'epoch';
  lines: number;
}

/**
 * The charts of a run's metrics lines (see the module docs). Epochs are shown 1-based ("epoch 1" is the first),
 * as the trainers print them; iterations and steps as logged. Fields outside the known groups that never change
 * are returned as `constants` instead of a flat chart each.
 */
export function planCharts(records: readonly MetricsRecord[], o: CurveOptions = {}): { charts: ChartSpec[]; constants: ConstantField[] } {
  const streams = new Map<string, MetricsRecord[]>();
  for (const r of records) {
    const ax = xAxisOf(r);
    if (ax === null) continue;
    if (!streams.has(ax)) streams.set(ax, []);
    streams.get(ax)!.push(r);
  }
  const several = streams.size > 1;
  const lnK = o.prototypes !== undefined && o.prototypes > 1 ? Math.log(o.prototypes) : undefined;
  const charts: ChartSpec[] = [];
  const constants: ConstantField[] = [];
  for (const ax of ['iteration', 'step', 'epoch'] as const) {
    const rs = streams.get(ax);
    if (!rs) continue;
    const xOf = (r: MetricsRecord) => (ax === 'epoch' ? (r.epoch as number) + 1 : (r[ax] as number));
    // Keys in first-seen order; each series holds the lines that have the key (probe lines are sparse).
    const keys: string[] = [];
    const seen = new Set<string>();
    const fields = rs.map((r) => numericFields(r));
    for (const f of fields) for (const k of f.keys()) if (!seen.has(k)) (seen.add(k), keys.push(k));
    const seriesOf = (k: string): ChartSeries => {
      const x: number[] = [];
      const y: (number | null)[] = [];
      rs.forEach((r, i) => {
        if (!fields[i]!.has(k)) return;
        x.push(xOf(r));
        y.push(fields[i]!.get(k)!);
      });
      return { name: k, x, y };
    };
    const byGroup = new Map<string, string[]>();
    const others: string[] = [];
    for (const k of keys) {
      const g = GROUPS.find((g) => g.test(k));
      if (g === undefined) others.push(k);
      else byGroup.set(g.key, [...(byGroup.get(g.key) ?? []), k]);
    }
    const suffix = several ? ` (per ${ax})` : '';
    const xLabel = ax;
    for (const g of GROUPS) {
      const ks = byGroup.get(g.key);
      if (!ks) continue;
      const refLines: RefLine[] = [];
      if (g.key === 'collapse') {
        refLines.push({ y: 1, label: '1.0: uniform outputs (H = ln K)' }, { y: COLLAPSE_DEFAULTS.onePrototype, label: `${COLLAPSE_DEFAULTS.onePrototype}: one prototype` });
      }
      if ((g.key === 'loss' || g.key === 'entropy') && lnK !== undefined && ax === 'iteration') refLines.push({ y: lnK, label: `ln K = ${lnK.toFixed(3)} (uniform)` });
      charts.push({ id: `${ax}-${g.key}`, title: g.title + suffix, xLabel, yLabel: g.yLabel, series: ks.map(seriesOf), refLines, yScale: g.yScale ?? 'linear' });
    }
    for (const k of others) {
      const s = seriesOf(k);
      const finite = s.y.filter((v): v is number => v !== null && Number.isFinite(v));
      if (finite.length === s.y.length && finite.every((v) => v === finite[0])) constants.push({ key: k, value: finite[0]!, axis: ax, lines: finite.length });
      else charts.push({ id: `${ax}-${slug(k)}`, title: k + suffix, xLabel, yLabel: k, series: [s], refLines: [], yScale: 'linear' });
    }
  }
  return { charts, constants };
}
