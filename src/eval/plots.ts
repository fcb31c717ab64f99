/**
 * Evaluation plots as hand-written SVG (no plotting dependency): ROC curves, precision–recall curves (step-wise, as
 * average precision integrates them) and a reliability diagram with a histogram of the predicted probabilities.
 * PNG files are the SVG rasterised by sharp (librsvg). Files are written atomically (temporary file + rename).
 *
 * Layout: a square plot area with axes, ticks every 0.2, light grid lines, axis labels and a title; the legend sits
 * to the right of the plot so it never hides a curve. Colours follow matplotlib's "tab10" cycle; after 10 classes
 * the cycle repeats with dashed, then dotted lines.
 */
import * as path from 'node:path';

import sharp from 'sharp';

import { writeFileAtomic } from '../data/fsutil.js';
import { escapeXml, FONT, niceStep, PALETTE, styleOf } from './svg-style.js';

export { escapeXml, niceStep, PALETTE };

export interface RocSeries {
  name: string;
  fpr: ArrayLike<number>;
  tpr: ArrayLike<number>;
  /** AUROC shown in the legend. */
  auc: number;
}

export interface PrSeries {
  name: string;
  /** precision_recall_curve order: recall decreasing, last point (recall 0, precision 1). */
  precision: ArrayLike<number>;
  recall: ArrayLike<number>;
  /** Average precision shown in the legend. */
  ap: number;
}

export interface CalibrationSeries {
  name: string;
  /** Mean predicted probability of each non-empty bin. */
  probPred: ArrayLike<number>;
  /** Fraction of positives of each non-empty bin. */
  probTrue: ArrayLike<number>;
}

export interface PlotOptions {
  title?: string;
  /** Which statistic the legend's AUROC / AP values are (e.g. "bootstrap median of 1000"), shown under the legend. */
  statistic?: string;
}

const f2 = (v: number): string => (Math.round(v * 100) / 100).toString();

/** Plot frame geometry: square plot area of `size` px at (x0, y0), legend to the right. */
interface Frame {
  x0: number;
  y0: number;
  size: number;
  legendX: number;
  width: number;
  height: number;
}

const ROW = 20;

/** Frame for a legend of `labels` (the width fits the longest label at about 7.5 px per character). */
function frame(labels: readonly string[], extraBottom = 0): Frame {
  const x0 = 80;
  const y0 = 50;
  const size = 440;
  const longest = Math.max(10, ...labels.map((l) => l.length));
  const legendW = Math.ceil(36 + 7.5 * longest + 20);
  const height = Math.max(y0 + size + 70 + extraBottom, y0 + 10 + labels.length * ROW + 20);
  return { x0, y0, size, legendX: x0 + size + 30, width: x0 + size + 30 + legendW, height };
}

const sx = (f: Frame, v: number): number => f.x0 + v * f.size;
const sy = (f: Frame, v: number): number => f.y0 + (1 - v) * f.size;

function header(f: Frame, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="${FONT}">`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text class="title" x="${f2(f.x0 + f.size / 2)}" y="30" font-size="17" font-weight="bold" text-anchor="middle">${escapeXml(title)}</text>`,
  ];
}

/** Unit-square axes with grid, ticks every 0.2 and labels. */
function axes(f: Frame, xLabel: string, yLabel: string): string[] {
  const out: string[] = [`<g class="grid" stroke="#e0e0e0" stroke-width="1">`];
  for (let k = 0; k <= 5; k++) {
    const v = k / 5;
    out.push(`<line x1="${f2(sx(f, v))}" y1="${f2(sy(f, 0))}" x2="${f2(sx(f, v))}" y2="${f2(sy(f, 1))}"/>`);
    out.push(`<line x1="${f2(sx(f, 0))}" y1="${f2(sy(f, v))}" x2="${f2(sx(f, 1))}" y2="${f2(sy(f, v))}"/>`);
  }
  out.push('</g>');
  out.push(`<rect class="axes" x="${f.x0}" y="${f.y0}" width="${f.size}" height="${f.size}" fill="none" stroke="#000000" stroke-width="1.2"/>`);
  out.push(`<g class="ticks" font-size="13" fill="#000000">`);
  for (let k = 0; k <= 5; k++) {
    const v = k / 5;
    const label = v.toFixed(1);
    out.push(`<line x1="${f2(sx(f, v))}" y1="${f2(sy(f, 0))}" x2="${f2(sx(f, v))}" y2="${f2(sy(f, 0) + 6)}" stroke="#000000"/>`);
    out.push(`<text x="${f2(sx(f, v))}" y="${f2(sy(f, 0) + 22)}" text-anchor="middle">${label}</text>`);
    out.push(`<line x1="${f2(sx(f, 0) - 6)}" y1="${f2(sy(f, v))}" x2="${f2(sx(f, 0))}" y2="${f2(sy(f, v))}" stroke="#000000"/>`);
    out.push(`<text x="${f2(sx(f, 0) - 10)}" y="${f2(sy(f, v) + 4.5)}" text-anchor="end">${label}</text>`);
  }
  out.push('</g>');
  out.push(`<text class="xlabel" x="${f2(f.x0 + f.size / 2)}" y="${f2(f.y0 + f.size + 48)}" font-size="15" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  const ly = f.y0 + f.size / 2;
  out.push(`<text class="ylabel" x="24" y="${f2(ly)}" font-size="15" text-anchor="middle" transform="rotate(-90 24 ${f2(ly)})">${escapeXml(yLabel)}</text>`);
  return out;
}

interface LegendEntry {
  label: string;
  color: string;
  dash: string;
  marker?: boolean;
}

function legend(f: Frame, entries: readonly LegendEntry[]): string[] {
  const out = [`<g class="legend" font-size="12.5">`];
  entries.forEach((e, k) => {
    const y = f.y0 + 10 + k * ROW;
    const dash = e.dash !== '' ? ` stroke-dasharray="${e.dash}"` : '';
    out.push(`<line x1="${f.legendX}" y1="${y}" x2="${f.legendX + 28}" y2="${y}" stroke="${e.color}" stroke-width="2.2"${dash}/>`);
    if (e.marker === true) out.push(`<circle cx="${f.legendX + 14}" cy="${y}" r="3.5" fill="${e.color}"/>`);
    out.push(`<text x="${f.legendX + 36}" y="${y + 4.5}">${escapeXml(e.label)}</text>`);
  });
  out.push('</g>');
  return out;
}

/**
 * Pixel coordinates of a curve, rounded to 0.01 px, without repeated points and without the middle points of
 * horizontal or vertical runs (step curves of large test sets stay small; the drawing is unchanged).
 */
export function curvePixels(xs: readonly number[], ys: readonly number[], toX: (v: number) => number, toY: (v: number) => number): [number, number][] {
  const pts: [number, number][] = [];
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    const y = ys[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const p: [number, number] = [Math.round(toX(x) * 100) / 100, Math.round(toY(y) * 100) / 100];
    const last = pts[pts.length - 1];
    if (last !== undefined && last[0] === p[0] && last[1] === p[1]) continue;
    const prev = pts[pts.length - 2];
    if (prev !== undefined && last !== undefined && ((prev[0] === last[0] && last[0] === p[0]) || (prev[1] === last[1] && last[1] === p[1]))) {
      // extend an axis-aligned run only when it keeps going in the same direction
      const dx1 = last[0] - prev[0];
      const dy1 = last[1] - prev[1];
      const dx2 = p[0] - last[0];
      const dy2 = p[1] - last[1];
      if (dx1 * dx2 >= 0 && dy1 * dy2 >= 0) {
        pts[pts.length - 1] = p;
        continue;
      }
    }
    pts.push(p);
  }
  return pts;
}

function polyline(f: Frame, xs: readonly number[], ys: readonly number[], color: string, dash: string, cls: string): string {
  const pts = curvePixels(xs, ys, (v) => sx(f, v), (v) => sy(f, v)).map(([x, y]) => `${x},${y}`);
  const d = dash !== '' ? ` stroke-dasharray="${dash}"` : '';
  return `<polyline class="${cls}" points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"${d}/>`;
}

const fmt3 = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : 'n/a');

/** ROC curves (one per class) with the chance diagonal; the legend shows each AUROC. */
export function rocSvg(series: readonly RocSeries[], opts: PlotOptions = {}): string {
  const entries: LegendEntry[] = series.map((s, k) => ({ label: `${s.name} (AUROC ${fmt3(s.auc)})`, ...styleOf(k) }));
  entries.push({ label: 'Chance (AUROC 0.500)', color: '#888888', dash: '5 4' });
  if (opts.statistic) entries.push({ label: `AUROC: ${opts.statistic}`, color: 'none', dash: '' });
  const f = frame(entries.map((e) => e.label));
  const out = [...header(f, opts.title ?? 'ROC curves'), ...axes(f, 'False positive rate (1 − specificity)', 'True positive rate (sensitivity)')];
  out.push(`<line class="chance" x1="${sx(f, 0)}" y1="${sy(f, 0)}" x2="${sx(f, 1)}" y2="${sy(f, 1)}" stroke="#888888" stroke-width="1.2" stroke-dasharray="5 4"/>`);
  series.forEach((s, k) => {
    const st = styleOf(k);
    out.push(polyline(f, Array.from(s.fpr), Array.from(s.tpr), st.color, st.dash, 'curve'));
  });
  out.push(...legend(f, entries), '</svg>');
  return `${out.join('\n')}\n`;
}

/** Step-wise (steps-post in curve order) coordinates of a precision–recall curve: the area under them is the AP. */
export function prStepPoints(recall: ArrayLike<number>, precision: ArrayLike<number>): { x: number[]; y: number[] } {
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < recall.length; i++) {
    if (i > 0) {
      x.push(recall[i] as number);
      y.push(precision[i - 1] as number);
    }
    x.push(recall[i] as number);
    y.push(precision[i] as number);
  }
  return { x, y };
}

/** Precision–recall curves (one per class, step-wise); the legend shows each average precision. */
export function prSvg(series: readonly PrSeries[], opts: PlotOptions = {}): string {
  const entries: LegendEntry[] = series.map((s, k) => ({ label: `${s.name} (AP ${fmt3(s.ap)})`, ...styleOf(k) }));
  if (opts.statistic) entries.push({ label: `AP: ${opts.statistic}`, color: 'none', dash: '' });
  const f = frame(entries.map((e) => e.label));
  const out = [...header(f, opts.title ?? 'Precision–recall curves'), ...axes(f, 'Recall (sensitivity)', 'Precision (PPV)')];
  series.forEach((s, k) => {
    const st = styleOf(k);
    const p = prStepPoints(s.recall, s.precision);
    out.push(polyline(f, p.x, p.y, st.color, st.dash, 'curve'));
  });
  out.push(...legend(f, entries), '</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * Reliability diagram (fraction of positives vs mean predicted probability per bin, one line per class, and the
 * diagonal of perfect calibration) above a histogram of the predicted probabilities of all classes (`counts` per bin
 * of the uniform bins `edges`).
 */
export function calibrationSvg(series: readonly CalibrationSeries[], histogram: { edges: ArrayLike<number>; counts: ArrayLike<number> }, opts: PlotOptions = {}): string {
  const histH = 130;
  const f = frame(['Perfectly calibrated', ...series.map((s) => s.name)], histH + 40);
  const out = [...header(f, opts.title ?? 'Calibration (reliability diagram)'), ...axes(f, 'Mean predicted probability', 'Fraction of positives')];
  // the x label of the top panel would collide with the histogram: move it below the histogram
  const top = out.findIndex((l) => l.startsWith('<text class="xlabel"'));
  if (top >= 0) out.splice(top, 1);
  out.push(`<line class="diagonal" x1="${sx(f, 0)}" y1="${sy(f, 0)}" x2="${sx(f, 1)}" y2="${sy(f, 1)}" stroke="#888888" stroke-width="1.2" stroke-dasharray="5 4"/>`);
  const entries: LegendEntry[] = [{ label: 'Perfectly calibrated', color: '#888888', dash: '5 4' }];
  series.forEach((s, k) => {
    const st = styleOf(k);
    const xs = Array.from(s.probPred);
    const ys = Array.from(s.probTrue);
    out.push(polyline(f, xs, ys, st.color, st.dash, 'curve'));
    xs.forEach((x, i) => out.push(`<circle class="marker" cx="${f2(sx(f, x))}" cy="${f2(sy(f, ys[i]!))}" r="3.5" fill="${st.color}"/>`));
    entries.push({ label: s.name, ...st, marker: true });
  });
  // histogram panel
  const hy0 = f.y0 + f.size + 40;
  const counts = Array.from(histogram.counts);
  const edges = Array.from(histogram.edges);
  const maxCount = Math.max(1, ...counts);
  const step = niceStep(maxCount, 3);
  const yMax = Math.ceil(maxCount / step) * step;
  const hyOf = (c: number): number => hy0 + histH - (c / yMax) * histH;
  out.push(`<g class="histogram">`);
  for (let t = 0; t <= yMax + 1e-9; t += step) {
    out.push(`<line x1="${f.x0}" y1="${f2(hyOf(t))}" x2="${f.x0 + f.size}" y2="${f2(hyOf(t))}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${f.x0 - 10}" y="${f2(hyOf(t) + 4.5)}" font-size="13" text-anchor="end">${t}</text>`);
  }
  counts.forEach((c, b) => {
    const x1 = sx(f, edges[b]!);
    const x2 = sx(f, edges[b + 1]!);
    out.push(`<rect class="bar" x="${f2(x1 + 1)}" y="${f2(hyOf(c))}" width="${f2(Math.max(0, x2 - x1 - 2))}" height="${f2(hy0 + histH - hyOf(c))}" fill="#7f9fbf" stroke="#4f6f8f"/>`);
  });
  out.push(`<rect x="${f.x0}" y="${hy0}" width="${f.size}" height="${histH}" fill="none" stroke="#000000" stroke-width="1.2"/>`);
  out.push(`<text class="caption" x="${f.x0 + f.size - 8}" y="${hy0 + 18}" font-size="12.5" text-anchor="end" fill="#333333">Predicted probabilities, all classes</text>`);
  for (let k = 0; k <= 5; k++) {
    const v = k / 5;
    out.push(`<line x1="${f2(sx(f, v))}" y1="${hy0 + histH}" x2="${f2(sx(f, v))}" y2="${hy0 + histH + 6}" stroke="#000000"/>`);
    out.push(`<text x="${f2(sx(f, v))}" y="${hy0 + histH + 22}" font-size="13" text-anchor="middle">${v.toFixed(1)}</text>`);
  }
  out.push('</g>');
  out.push(`<text class="xlabel" x="${f2(f.x0 + f.size / 2)}" y="${hy0 + histH + 48}" font-size="15" text-anchor="middle">Mean predicted probability</text>`);
  const ly = hy0 + histH / 2;
  out.push(`<text class="ylabel" x="24" y="${f2(ly)}" font-size="15" text-anchor="middle" transform="rotate(-90 24 ${f2(ly)})">Count</text>`);
  out.push(...legend(f, entries), '</svg>');
  return `${out.join('\n')}\n`;
}

/** Width and height attributes of an SVG produced here. */
export function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]*\swidth="(\d+(?:\.\d+)?)"[^>]*\sheight="(\d+(?:\.\d+)?)"/.exec(svg);
  if (m === null) throw new RangeError('not an SVG with width and height attributes');
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** Rasterises an SVG to PNG with sharp at `scale` × its pixel size (density 72·scale dpi). */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  if (!(scale > 0)) throw new RangeError(`scale must be positive, got ${scale}`);
  return sharp(Buffer.from(svg), { density: 72 * scale }).png().toBuffer();
}

/** Writes `<base>.svg` and (unless png is false) `<base>.png` into `dir`, atomically. Returns the paths. */
export async function writePlot(dir: string, base: string, svg: string, opts: { png?: boolean; scale?: number } = {}): Promise<{ svg: string; png?: string }> {
  const svgPath = path.join(dir, `${base}.svg`);
  await writeFileAtomic(svgPath, svg);
  if (opts.png === false) return { svg: svgPath };
  const pngPath = path.join(dir, `${base}.png`);
  await writeFileAtomic(pngPath, await svgToPng(svg, opts.scale ?? 2));
  return { svg: svgPath, png: pngPath };
}
