/**
 * The look shared by every hand-written SVG chart (src/eval/plots.ts, src/report/charts.ts): matplotlib's "tab10"
 * colours, dashes for the cycles after the tenth series, the font stack, XML escaping and "nice" tick steps. No
 * dependencies (plots.ts loads sharp for its PNGs; the run report page reads these without it).
 */

/** matplotlib's tab10 colours (https://matplotlib.org/stable/gallery/color/colormap_reference.html). */
export const PALETTE: readonly string[] = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
/** Line dashes of the 1st, 2nd and 3rd cycle through the palette. */
export const DASHES: readonly string[] = ['', '7 4', '2 3'];
export const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

/** Escapes text for SVG/HTML content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Colour and dash of series `k`: tab10, then the cycle repeats dashed, then dotted. */
export function styleOf(k: number): { color: string; dash: string } {
  return { color: PALETTE[k % PALETTE.length]!, dash: DASHES[Math.floor(k / PALETTE.length) % DASHES.length]! };
}

/** "Nice" tick step (1, 2 or 5 × 10^k) giving about `target` intervals up to `max`. */
export function niceStep(max: number, target = 4): number {
  if (!(max > 0)) return 1;
  const raw = max / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}
