/**
 * The run report page (issue #14): `writeRunReport(runDir)` reads a run folder (src/report/run.ts) and writes one
 * self-contained `report.html` (src/report/page.ts) atomically. It computes nothing: no LibTorch, no sharp.
 *
 * `cxformer report RUN` calls it; finetune (linear, full, segmentation) and evaluate call `autoRunReport` when
 * they end, which never fails the run (a warning names the file) and is off with `CXFORMER_REPORT=0`.
 */
import path from 'node:path';
import { writeFileAtomic } from '../data/fsutil.js';
import { renderRunReport } from './page.js';
import { readRunFolder, type RunKind } from './run.js';

export { lineChartSvg, type ChartSeries, type LineChartOptions, type RefLine } from './charts.js';
export { planCharts, type ChartSpec } from './curves.js';
export { renderRunReport, SECTION_IDS } from './page.js';
export { detectKind, readRunFolder, type RunFolder, type RunKind } from './run.js';

export interface RunReportOptions {
  /** The page's path. @default <runDir>/report.html */
  out?: string;
  /** Segmentation overlays embedded at most. @default 24 */
  maxOverlays?: number;
  /** The time written in the footer. @default now */
  generatedAt?: Date;
}

export interface RunReport {
  file: string;
  kind: RunKind;
  bytes: number;
}

/** Writes the report page of the run folder `runDir` (see the module docs). */
export async function writeRunReport(runDir: string, o: RunReportOptions = {}): Promise<RunReport> {
  const run = await readRunFolder(runDir, o.maxOverlays !== undefined ? { maxOverlays: o.maxOverlays } : {});
  const file = path.resolve(o.out ?? path.join(run.dir, 'report.html'));
  const html = renderRunReport(run, o.generatedAt ? { generatedAt: o.generatedAt } : {});
  await writeFileAtomic(file, html);
  return { file, kind: run.kind, bytes: Buffer.byteLength(html) };
}

/** Whether the automatic page at the end of a run is on (off: `CXFORMER_REPORT=0`, `false`, `off` or `no`). */
export function runReportEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return !/^(0|false|off|no)$/i.test(env.CXFORMER_REPORT ?? '');
}

/**
 * The page at the end of a run: written unless `CXFORMER_REPORT=0`; any failure is reported through `warn` (naming
 * the file) and never thrown, so a report problem never fails the run. Returns the page's path, or null.
 */
export async function autoRunReport(runDir: string, warn: (msg: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (!runReportEnabled(env)) return null;
  const file = path.join(path.resolve(runDir), 'report.html');
  try {
    return (await writeRunReport(runDir)).file;
  } catch (e) {
    warn(`warning: could not write the run report ${file}: ${(e as Error).message} (the run itself is complete; retry with: cxformer report ${runDir})`);
    return null;
  }
}
