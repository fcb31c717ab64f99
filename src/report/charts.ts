/**
 * Line charts as hand-written SVG for the run report page (src/report/page.ts): training curves over iterations,
 * steps or epochs. The look follows src/eval/plots.ts (tab10 colours, dashes after ten series, axes with ticks and
 * light grid lines, the legend to the right of the plot so that it never hides a curve), with data-driven axes:
 * "nice" linear ticks (1, 2, 5 × 10^k), or decades on a log scale.
 *
 * Each series is one `<g class="series" data-name=… data-points=N>` holding its polyline(s) (a missing value, null
 * or non-finite, breaks the line) and, for short series, a marker per point, so that a probe measured at two
 * checkpoints shows as two dots. Reference lines (e.g. H / ln K = 1, uniform outputs) are grey, dashed and named in
 * the legend. The SVG is meant to be inlined in HTML; `standalone: true` adds the XML namespace for a file.
 */
import { escapeXml, FONT, niceStep, styleOf } from '../eval/svg-style.js';

export interface ChartSeries {
  name: string;
  /** x values (iteration, step or epoch), one per y value. */
  x: readonly number[];
  /** y values; null, NaN and ±∞ are gaps. */
  y: readonly (number | null)[];
}

export interface RefLine {
  y: number;
  label: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel?: string;
  /** Horizontal reference lines, in the legend after the series. */
  refLines?: readonly RefLine[];
  /** 'log' needs every value (and reference line) positive, else the chart falls back to linear. @default 'linear' */
  yScale?: 'linear' | 'log';
  /** x ticks at whole numbers only (iterations, epochs). @default true */
  integerX?: boolean;
  /** Plot area in px (the page scales charts down to its width). @default 440 × 240 */
  plotWidth?: number;
  plotHeight?: number;
  /** Markers at each point of series with at most this many points. @default 40 */
  markersUpTo?: number;
  /** Longer series are thinned to about this many drawn points (every k-th, the last kept). @default 2000 */
  maxPoints?: number;
  /** Add xmlns (a standalone .svg file rather than SVG inlined in HTML). @default false */
  standalone?: boolean;
}

const ROW = 19;

/** Smallest and largest of `v` (a loop: spreading 10^5 values into Math.min overflows the call stack). */
export function extent(v: readonly number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of v) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return [lo, hi];
}
const r2 = (v: number): number => Math.round(v * 100) / 100;

/** The finite (x, y) pairs of a series, in order, with null where the line breaks. */
function points(s: ChartSeries): ([number, number] | null)[] {
  if (s.x.length !== s.y.length) throw new RangeError(`chart series '${s.name}': ${s.x.length} x values for ${s.y.length} y values`);
  const out: ([number, number] | null)[] = [];
  for (let i = 0; i < s.x.length; i++) {
    const x = s.x[i]!;
    const y = s.y[i];
    out.push(typeof y === 'number' && Number.isFinite(y) && Number.isFinite(x) ? [x, y] : null);
  }
  return out;
}

/**
 * Tick labels of one axis, in one form for all: exponent form ("3e-4", "1.05e-3") when the largest tick is under
 * 0.01 or at least 1e5, else fixed with as many decimals as the step has (0.25 → 2). Log axes: `log` labels each
 * tick on its own.
 */
export function formatTicks(ticks: readonly number[], log = false): string[] {
  if (log) return ticks.map((v) => formatTick(v, v));
  const maxAbs = Math.max(0, ...ticks.map(Math.abs));
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : maxAbs || 1;
  return ticks.map((v) => formatTick(v, step, maxAbs));
}

/** Tick label of `v` on an axis whose ticks are `step` apart and reach `maxAbs` (see formatTicks). */
export function formatTick(v: number, step: number, maxAbs = Math.abs(v)): string {
  if (v === 0) return '0';
  if (maxAbs >= 1e5 || maxAbs < 1e-2) {
    const digits = Math.max(0, Math.min(4, Math.floor(Math.log10(Math.abs(v))) - Math.floor(Math.log10(Math.abs(step) || Math.abs(v)) + 1e-9)));
    return v.toExponential(digits).replace(/\.?0+e/, 'e').replace('e+', 'e');
  }
  // as many decimals as the step has (0.25 → 2), at most 6
  const st = Number(Math.abs(step).toPrecision(6)).toFixed(6).replace(/0+$/, '');
  const decimals = Math.min(6, st.length - st.indexOf('.') - 1);
  return v.toFixed(decimals);
}

/** Linear ticks covering [lo, hi] (at least two). */
export function linearTicks(lo: number, hi: number, target = 5, integer = false): { min: number; max: number; ticks: number[] } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  let step = niceStep(hi - lo, target);
  if (integer) step = Math.max(1, Math.round(step));
  const min = Math.floor(lo / step + 1e-9) * step;
  const max = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let k = 0; min + k * step <= max + step * 1e-9; k++) ticks.push(Number((min + k * step).toPrecision(12)));
  return { min, max, ticks };
}

/** Log-scale ticks covering [lo, hi] (lo > 0): decades, with 2 and 5 when the range spans under two decades. */
export function logTicks(lo: number, hi: number): { min: number; max: number; ticks: number[] } {
  const e0 = Math.floor(Math.log10(lo) + 1e-9);
  let e1 = Math.ceil(Math.log10(hi) - 1e-9);
  if (e1 <= e0) e1 = e0 + 1;
  const ticks: number[] = [];
  const fine = e1 - e0 <= 2;
  for (let e = e0; e <= e1; e++) for (const m of fine ? [1, 2, 5] : [1]) if (e < e1 || m === 1) ticks.push(Number((m * 10 ** e).toPrecision(12)));
  // Trim the coarse ends the data do not reach (fine ticks only).
  if (fine) {
    while (ticks.length > 2 && ticks[1]! <= lo) ticks.shift();
    while (ticks.length > 2 && ticks[ticks.length - 2]! >= hi) ticks.pop();
  }
  return { min: ticks[0]!, max: ticks[ticks.length - 1]!, ticks };
}

/**
 * A line chart of `series` against their x values (see the module docs). Series without a single finite point are
 * listed in the legend as "(no data)".
 */
export function lineChartSvg(series: readonly ChartSeries[], opts: LineChartOptions): string {
  const W = opts.plotWidth ?? 440;
  const H = opts.plotHeight ?? 240;
  const x0 = 78;
  const y0 = 44;
  const pts = series.map(points);
  const refs = opts.refLines ?? [];
  const xs: number[] = [];
  const ys: number[] = [];
  for (const p of pts) for (const q of p) if (q) (xs.push(q[0]), ys.push(q[1]));
  for (const r of refs) ys.push(r.y);
  let log = opts.yScale === 'log' && ys.length > 0 && ys.every((v) => v > 0);
  const [yLo, yHi] = extent(ys);
  const [xLo, xHi] = extent(xs);
  const yAxis = ys.length === 0 ? linearTicks(0, 1) : log ? logTicks(yLo, yHi) : linearTicks(yLo, yHi);
  if (!Number.isFinite(yAxis.min) || !Number.isFinite(yAxis.max)) log = false;
  const xAxis = xs.length === 0 ? linearTicks(0, 1, 5, true) : linearTicks(xLo, xHi, 6, opts.integerX ?? true);
  const tx = (v: number): number => x0 + ((v - xAxis.min) / (xAxis.max - xAxis.min)) * W;
  const ty = log
    ? (v: number): number => y0 + H - ((Math.log10(v) - Math.log10(yAxis.min)) / (Math.log10(yAxis.max) - Math.log10(yAxis.min))) * H
    : (v: number): number => y0 + H - ((v - yAxis.min) / (yAxis.max - yAxis.min)) * H;

  const labels = [...series.map((s, k) => (pts[k]!.some((q) => q) ? s.name : `${s.name} (no data)`)), ...refs.map((r) => r.label)];
  const longest = Math.max(8, ...labels.map((l) => l.length));
  const legendX = x0 + W + 24;
  const width = Math.ceil(legendX + 36 + 7 * longest + 12);
  const height = Math.max(y0 + H + 58, y0 + 6 + labels.length * ROW + 10);
  const ns = opts.standalone ? ' xmlns="http://www.w3.org/2000/svg"' : '';
  const out: string[] = [
    `<svg${ns} class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" role="img" aria-label="${escapeXml(opts.title)}">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${r2(x0 + W / 2)}" y="26" font-size="15" font-weight="bold" text-anchor="middle">${escapeXml(opts.title)}</text>`,
  ];

  // grid, axes box, ticks
  const yTicks = yAxis.ticks;
  const xTicks = xAxis.ticks;
  out.push('<g class="grid" stroke="#e6e6e6" stroke-width="1">');
  for (const v of xTicks) out.push(`<line x1="${r2(tx(v))}" y1="${y0}" x2="${r2(tx(v))}" y2="${y0 + H}"/>`);
  for (const v of yTicks) out.push(`<line x1="${x0}" y1="${r2(ty(v))}" x2="${x0 + W}" y2="${r2(ty(v))}"/>`);
  out.push('</g>');
  out.push(`<rect class="axes" x="${x0}" y="${y0}" width="${W}" height="${H}" fill="none" stroke="#000000" stroke-width="1.1"/>`);
  out.push('<g class="ticks" font-size="12" fill="#000000">');
  const xText = formatTicks(xTicks);
  xTicks.forEach((v, i) => {
    out.push(`<line x1="${r2(tx(v))}" y1="${y0 + H}" x2="${r2(tx(v))}" y2="${y0 + H + 5}" stroke="#000000"/>`);
    out.push(`<text x="${r2(tx(v))}" y="${y0 + H + 19}" text-anchor="middle">${escapeXml(xText[i]!)}</text>`);
  });
  const yText = formatTicks(yTicks, log);
  yTicks.forEach((v, i) => {
    out.push(`<line x1="${x0 - 5}" y1="${r2(ty(v))}" x2="${x0}" y2="${r2(ty(v))}" stroke="#000000"/>`);
    out.push(`<text x="${x0 - 8}" y="${r2(ty(v) + 4)}" text-anchor="end">${escapeXml(yText[i]!)}</text>`);
  });
  out.push('</g>');
  out.push(`<text class="xlabel" x="${r2(x0 + W / 2)}" y="${y0 + H + 42}" font-size="13" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) {
    const ly = y0 + H / 2;
    out.push(`<text class="ylabel" x="16" y="${r2(ly)}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${r2(ly)})">${escapeXml(opts.yLabel + (log ? ' (log scale)' : ''))}</text>`);
  }

  // reference lines under the curves
  for (const r of refs) {
    out.push(`<line class="ref" x1="${x0}" y1="${r2(ty(r.y))}" x2="${x0 + W}" y2="${r2(ty(r.y))}" stroke="#888888" stroke-width="1.3" stroke-dasharray="5 4"/>`);
  }

  // the series
  const maxPoints = opts.maxPoints ?? 2000;
  const markersUpTo = opts.markersUpTo ?? 40;
  series.forEach((s, k) => {
    const st = styleOf(k);
    const p = pts[k]!;
    const n = p.filter((q) => q).length;
    const stride = n > maxPoints ? Math.ceil(n / maxPoints) : 1;
    out.push(`<g class="series" data-name="${escapeXml(s.name)}" data-points="${n}">`);
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) {
        const dash = st.dash !== '' ? ` stroke-dasharray="${st.dash}"` : '';
        out.push(`<polyline points="${run.join(' ')}" fill="none" stroke="${st.color}" stroke-width="1.8" stroke-linejoin="round"${dash}/>`);
      }
      run = [];
    };
    let seen = 0;
    for (const q of p) {
      if (!q) {
        flush();
        continue;
      }
      seen++;
      if (stride > 1 && (seen - 1) % stride !== 0 && seen !== n) continue;
      run.push(`${r2(tx(q[0]))},${r2(ty(q[1]))}`);
    }
    flush();
    if (n <= markersUpTo) for (const q of p) if (q) out.push(`<circle cx="${r2(tx(q[0]))}" cy="${r2(ty(q[1]))}" r="2.8" fill="${st.color}"/>`);
    out.push('</g>');
  });

  // legend
  out.push('<g class="legend" font-size="12">');
  labels.forEach((label, k) => {
    const y = y0 + 6 + k * ROW;
    const isRef = k >= series.length;
    const st = isRef ? { color: '#888888', dash: '5 4' } : styleOf(k);
    const dash = st.dash !== '' ? ` stroke-dasharray="${st.dash}"` : '';
    out.push(`<line x1="${legendX}" y1="${y}" x2="${legendX + 28}" y2="${y}" stroke="${st.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${legendX + 36}" y="${y + 4}">${escapeXml(label)}</text>`);
  });
  out.push('</g>', '</svg>');
  return `${out.join('\n')}\n`;
}
