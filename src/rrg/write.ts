/**
 * The files of a report-generation evaluation, written atomically into one folder:
 * - `report.json`: protocol, pairs, labeler, bootstrap settings, every metric (point estimate, median and interval on
 *   the protocol's scale) with its metric card, the metrics skipped and why, per-class label F1, labeler diagnostics;
 * - `report.md`: the same as tables a person reads (the point estimate first, then the bootstrap median and interval —
 *   the CXformer card prints "median [95 % CI]"; both are given so neither is mistaken for the other);
 * - `pairs.jsonl`: one line per pair (id, generated, reference, ROUGE-L, the labels of both texts).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import { writeFileAtomic } from '../data/fsutil.js';
import { formatCell } from '../eval/labelers/types.js';
import type { ReportEvaluation, ReportMetricResult } from './evaluate.js';
import type { PairSummary } from './pairs.js';

export interface ReportFiles {
  json: string;
  markdown: string;
  pairs: string;
}

/** Digits for a value on a protocol's scale: 2 on 0–100, 4 on 0–1. */
function fmt(v: number, scale: string): string {
  return v.toFixed(scale === '0-100' ? 2 : 4);
}

/** `value`, and `median [lo, hi]` when bootstrapped. */
export function formatMetric(m: ReportMetricResult): { value: string; interval: string } {
  if (m.value === null) return { value: `— (${m.reason ?? 'undefined'})`, interval: '' };
  const s = m.card.scale;
  const iv = m.interval ? `${fmt(m.interval.median, s)} [${fmt(m.interval.lo, s)}, ${fmt(m.interval.hi, s)}]` : '';
  return { value: fmt(m.value, s), interval: iv };
}

const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderReportMarkdown(e: ReportEvaluation, summary?: PairSummary, title = 'Report generation evaluation'): string {
  const out: string[] = [`# ${title}`, ''];
  out.push(`- Protocol: \`${e.protocol}\` (docs/report-generation.md says what each preset computes)`);
  out.push(`- Report pairs: ${e.pairs}${summary ? ` (predictions ${summary.predictionsFile}${summary.referencesFile ? `, references ${summary.referencesFile}` : ''}; ${summary.emptyHypotheses} empty generated reports)` : ''}`);
  out.push(`- Labeler: ${e.labeler ? `${e.labeler.name} (${e.labeler.version})` : 'none (label metrics skipped)'}`);
  if (e.bootstrap) {
    out.push(`- Bootstrap: ${e.bootstrap.n} resamples of ${e.bootstrap.nUnits} ${e.bootstrap.unit === 'patient' ? 'patients' : 'report pairs'}, seed ${e.bootstrap.seed}, ${Math.round(e.bootstrap.level * 100)} % percentile interval (${e.bootstrap.percentile})`);
  } else out.push('- Bootstrap: off');
  out.push('', '| Metric | Value | Bootstrap median [CI] | Implementation | Tokenisation / case | Averaging / uncertain |', '|---|---|---|---|---|---|');
  for (const m of e.metrics) {
    const f = formatMetric(m);
    const avg = [m.card.averaging, m.card.uncertain].filter(Boolean).join('; ');
    out.push(`| ${esc(m.name)} | ${f.value} | ${f.interval} | ${esc(m.card.implementation)} (${m.card.scale}) | ${esc(`${m.card.tokenisation}; ${m.card.case}; text ${m.card.text}`)} | ${esc(avg)} |`);
  }
  if (e.skipped.length > 0) {
    out.push('', '## Not computed', '');
    for (const s of e.skipped) out.push(`- ${s.name}: ${s.reason}`);
  }
  for (const pc of e.perClass) {
    out.push('', `## Per class: ${pc.set} (uncertain counted negative; point estimates)`, '', '| Class | Precision | Recall | F1 | Support |', '|---|---|---|---|---|');
    for (const c of pc.classes) out.push(`| ${esc(c.name)} | ${c.precision.toFixed(4)} | ${c.recall.toFixed(4)} | ${c.f1.toFixed(4)} | ${c.support} |`);
  }
  const kinds = (r: Record<string, number>) => Object.entries(r).map(([k, v]) => `${v} ${k}`).join(', ') || 'none';
  if (e.labeler) {
    out.push('', '## Labeler diagnostics', '', `- generated reports: ${kinds(e.diagnostics.hyps)}`, `- references: ${kinds(e.diagnostics.refs)}`);
    for (const d of e.diagnostics.examples.slice(0, 10)) out.push(`- pair ${d.report + 1}: ${d.kind}: "${esc(d.sentence)}" (${esc(d.message)})`);
  }
  out.push('');
  return out.join('\n');
}

/** Writes report.json, report.md and pairs.jsonl into `dir` (created when missing). */
export async function writeReportEvaluation(dir: string, e: ReportEvaluation, summary?: PairSummary, title?: string): Promise<ReportFiles> {
  await mkdir(dir, { recursive: true });
  const files = { json: path.join(dir, 'report.json'), markdown: path.join(dir, 'report.md'), pairs: path.join(dir, 'pairs.jsonl') };
  const { perPair, ...rest } = e;
  await writeFileAtomic(files.json, `${JSON.stringify({ task: 'report', ...rest, ...(summary ? { input: summary } : {}) }, null, 2)}\n`);
  await writeFileAtomic(files.markdown, renderReportMarkdown(e, summary, title));
  const lines = perPair.map((p) => {
    const o: Record<string, unknown> = { id: p.id, generated: p.hypothesis, reference: p.reference, rougeL: p.rougeL };
    if (p.labelsHyp && e.labeler) {
      o.labels_generated = Object.fromEntries(e.labeler.classes.map((c, k) => [c, formatCell(p.labelsHyp![k] ?? null)]));
      o.labels_reference = Object.fromEntries(e.labeler.classes.map((c, k) => [c, formatCell(p.labelsRef![k] ?? null)]));
    }
    return JSON.stringify(o);
  });
  await writeFileAtomic(files.pairs, lines.length ? `${lines.join('\n')}\n` : '');
  return files;
}
