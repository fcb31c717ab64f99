/**
 * `cxformer evaluate --task report --predictions FILE [--references FILE] [--protocol P] [--labeler L]
 * [--radgraph HYP.json,REF.json] [--bootstrap N] --out DIR`: scores any model's generated reports (src/rrg/evaluate.ts)
 * and writes report.json, report.md and pairs.jsonl into DIR. Text only: LibTorch is never loaded.
 *
 * Labelers: `phantom` (exact, for phantom reports), `rules` (cheXpert-lite), `labels:FILE` (labels keyed by report
 * text, e.g. CheXbert's output on generated and reference texts together) or `labels:GENERATED,REFERENCE` (two files
 * keyed by report id).
 */
import { DataError } from '../../data/errors.js';
import { labelerFromSpec } from '../../eval/labelers/index.js';
import type { LabelCell } from '../../eval/labelers/types.js';
import { pairRadGraph, readRadGraphFile } from '../../eval/text/radgraph.js';
import { evaluateReports, type LabelSource } from '../../rrg/evaluate.js';
import { readReportPairs, type ReportPair } from '../../rrg/pairs.js';
import { parseProtocol } from '../../rrg/protocol.js';
import { formatMetric, writeReportEvaluation } from '../../rrg/write.js';
import { type Args, progress } from './common.js';

function argError(message: string): Error {
  return Object.assign(new Error(message), { code: 'CXF_ARG' });
}

/** The labels of both sides from the --labeler spec. */
function labelSource(spec: string, pairs: readonly ReportPair[]): LabelSource {
  const m = /^labels:([^,]+),(.+)$/.exec(spec);
  if (!m) return { labeler: labelerFromSpec(spec) };
  // Two id-keyed files: generated, then reference.
  const gen = labelerFromSpec(`labels:${m[1]}`) as ReturnType<typeof labelerFromSpec> & { labelIds(ids: readonly string[]): LabelCell[][]; labels: { keyedBy: string; file: string; classes: string[] } };
  const ref = labelerFromSpec(`labels:${m[2]}`) as typeof gen;
  for (const l of [gen, ref]) {
    if (l.labels.keyedBy !== 'id') throw new DataError('labels:GENERATED,REFERENCE needs two files keyed by report id; this one is keyed by report text (give it alone: labels:FILE)', { file: l.labels.file });
  }
  if (gen.classes.join('|') !== ref.classes.join('|')) {
    throw new DataError(`the two label files have different classes: ${gen.classes.join(', ')} vs ${ref.classes.join(', ')}`, { file: ref.labels.file });
  }
  const ids = pairs.map((p) => p.id);
  return { labeler: gen, rows: { hyps: gen.labelIds(ids), refs: ref.labelIds(ids) } };
}

export async function run(a: Args): Promise<number> {
  const log = progress(Boolean(a.quiet));
  const protocol = parseProtocol(String(a.protocol ?? 'cxformer'));
  const bootstrap = Number(a.bootstrap ?? 1000);
  if (!(Number.isInteger(bootstrap) && bootstrap >= 0)) throw argError(`--bootstrap must be an integer >= 0, got ${a.bootstrap}`);
  const seed = Number(a['bootstrap-seed'] ?? 0);
  if (!Number.isInteger(seed)) throw argError(`--bootstrap-seed must be an integer, got ${a['bootstrap-seed']}`);
  const { pairs, summary } = await readReportPairs(String(a.predictions), {
    ...(a.references !== undefined ? { references: String(a.references) } : {}),
    ...(a['id-column'] !== undefined ? { idColumn: String(a['id-column']) } : {}),
    ...(a.column !== undefined ? { column: String(a.column) } : {}),
  });
  const labels = a.labeler !== undefined ? labelSource(String(a.labeler), pairs) : undefined;
  let radgraph: { hyps: import('../../eval/text/radgraph.js').RadGraphAnnotation[]; refs: import('../../eval/text/radgraph.js').RadGraphAnnotation[]; source: string } | undefined;
  if (a.radgraph !== undefined) {
    const files = String(a.radgraph).split(',');
    if (files.length !== 2 || files.some((f) => f === '')) throw argError(`--radgraph takes two files, HYP.json,REF.json; got '${a.radgraph}'`);
    const [hf, rf] = files as [string, string];
    const p = pairRadGraph(await readRadGraphFile(hf), await readRadGraphFile(rf), { hyp: hf, ref: rf });
    const byId = new Map(p.ids.map((id, i) => [id, i]));
    const missing = pairs.filter((x) => !byId.has(x.id)).map((x) => x.id);
    if (missing.length) throw new DataError(`${missing.length} of ${pairs.length} predictions have no RadGraph annotation: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, { file: rf });
    radgraph = { hyps: pairs.map((x) => p.hyps[byId.get(x.id)!]!), refs: pairs.map((x) => p.refs[byId.get(x.id)!]!), source: `${hf},${rf}` };
  }
  const e = evaluateReports(pairs, {
    protocol,
    ...(labels ? { labels } : {}),
    ...(radgraph ? { radgraph } : {}),
    bootstrap,
    seed,
    onProgress: (done, total) => log.update('evaluate: bootstrap', done, total),
  });
  const files = await writeReportEvaluation(String(a.out), e, summary);
  const out = progress(false);
  for (const m of e.metrics) {
    const f = formatMetric(m);
    out.done(`  ${m.name}: ${f.value}${f.interval ? `  (bootstrap median [95 % CI] ${f.interval})` : ''}`);
  }
  for (const s of e.skipped) out.done(`  ${s.name}: not computed (${s.reason})`);
  const diag = Object.entries(e.diagnostics.hyps).map(([k, v]) => `${v} ${k}`).join(', ');
  if (diag) out.done(`  labeler diagnostics on the generated reports: ${diag} (report.md lists examples)`);
  out.done(`evaluate: ${e.pairs} report pairs, protocol ${protocol}: ${files.json}, ${files.markdown}, ${files.pairs}`);
  return 0;
}
