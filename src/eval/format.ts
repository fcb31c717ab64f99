/**
 * How an evaluation metric of metrics.json reads in a table (report.md, the model card, the run report page). No
 * dependencies, so that pages built from metrics.json load neither sharp nor LibTorch.
 */

/** A metric in metrics.json: defined (value, and the bootstrap summary when run) or undefined with a reason. */
export type JsonMetric =
  | { value: number; median?: number | null; ci?: [number, number] | null; n_valid?: number; n_skipped?: number }
  | { value: null; reason: string };

/** "83.34 [83.17, 83.39]" (× 100), "83.34" without a bootstrap, "— (reason)" when undefined. */
export function formatCardCell(m: JsonMetric): string {
  if (m.value === null) return `— (${m.reason})`;
  const pc = (v: number): string => (v * 100).toFixed(2);
  if (m.median !== undefined && m.median !== null && m.ci !== undefined && m.ci !== null) return `${pc(m.median)} [${pc(m.ci[0])}, ${pc(m.ci[1])}]`;
  return pc(m.value);
}
