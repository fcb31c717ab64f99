/**
 * The run report page: one self-contained HTML file (no network: inline CSS, inline SVG, PNGs as data: URIs, and a
 * Content-Security-Policy that forbids every fetch), readable by opening it from disk. Sections, each with a stable
 * id and a sentence saying so when it has no data:
 *   #summary     kind, folder and files (absolute paths), when it ran, wall time, stage timings, machine, results
 *   #curves      training curves from metrics.jsonl / history.jsonl (src/report/curves.ts, src/report/charts.ts)
 *   #evaluation  the evaluation tables with bootstrap CIs, the statistic report.md shows (src/eval/report.ts
 *                renderMarkdown, src/segment/evaluate.ts renderSegReport)
 *   #plots       ROC / PR / calibration / per-image Dice plots and segmentation overlays found in the folder
 *   #config      the recorded settings (resolved.yaml, finetune.json, run.json) in a collapsible <details>
 * A small inline script (allowed by its hash, nothing else may run) marks `<body data-rendered="true">` with the
 * section ids it found, so a headless browser can tell the page rendered.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { formatCardCell, type JsonMetric } from '../eval/format.js';
import { formatDuration } from '../run/duration.js';
import { escapeXml } from '../eval/svg-style.js';
import { extent, lineChartSvg } from './charts.js';
import { planCharts, type ChartSpec, type ConstantField } from './curves.js';
import { plotTitle, type RunFolder } from './run.js';

export const SECTION_IDS = ['summary', 'curves', 'evaluation', 'plots', 'config'] as const;

export interface RenderOptions {
  /** When the page was made (footer). @default now */
  generatedAt?: Date;
}

const h = escapeXml;

const KIND_TITLE: Record<RunFolder['kind'], string> = {
  pretraining: 'Pretraining (cxformer train)',
  'linear probe': 'Linear probe (cxformer finetune)',
  'full fine-tuning': 'Full fine-tuning (cxformer finetune --mode full)',
  segmentation: 'Segmentation (cxformer finetune --task segmentation)',
  evaluation: 'Evaluation (cxformer evaluate)',
};

const num = (v: number, digits = 4): string => (Number.isFinite(v) ? (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : Number(v.toPrecision(digits)).toString()) : 'n/a');
const iso = (d: Date): string => d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

function table(head: readonly string[], rows: readonly (readonly string[])[], cls = ''): string {
  return [
    `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((c) => `<th>${c}</th>`).join('')}</tr></thead><tbody>`,
    ...rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`),
    '</tbody></table>',
  ].join('\n');
}

const none = (text: string): string => `<p class="none">${text}</p>`;

/** Mean of the finite numbers of `key` over the lines that have it. */
function meanOf(records: readonly Record<string, unknown>[], key: string): { mean: number; n: number; sum: number } {
  let sum = 0;
  let n = 0;
  for (const r of records) {
    const v = r[key];
    if (typeof v === 'number' && Number.isFinite(v)) (sum += v, n++);
  }
  return { mean: n ? sum / n : NaN, n, sum };
}

// ---- #summary ----

function summary(run: RunFolder): string {
  const recs = run.metrics?.records ?? [];
  const rows: string[][] = [];
  rows.push(['Kind', h(KIND_TITLE[run.kind])]);
  rows.push(['Folder', `<code>${h(run.dir)}</code>`]);
  if (run.log?.first && run.log.last) {
    rows.push(['Ran', `${h(iso(run.log.first))} → ${h(iso(run.log.last))} (first and last line of train.log)`]);
    rows.push(['Wall time', `${h(formatDuration((run.log.last.getTime() - run.log.first.getTime()) / 1000))} (train.log span, restarts included)`]);
  } else if (run.modified) rows.push(['Ran', `files last written ${h(iso(run.modified))} (no train.log timestamps)`]);
  else rows.push(['Ran', 'not recorded (no train.log, no metrics file)']);
  const iters = recs.filter((r) => typeof r.iteration === 'number').map((r) => r.iteration as number);
  const epochs = recs.filter((r) => typeof r.epoch === 'number' && (r.kind === undefined || r.kind === 'epoch') && typeof r.iteration !== 'number').map((r) => r.epoch as number);
  if (iters.length) rows.push(['Iterations logged', `${new Set(iters).size} (last ${extent(iters)[1]})`]);
  if (epochs.length) rows.push(['Epochs logged', `${new Set(epochs).size} (last ${extent(epochs)[1] + 1})`]);
  const machine = [
    run.machine.hosts.length ? `host ${run.machine.hosts.map(h).join(', ')}` : '',
    run.machine.device !== null ? `device ${h(run.machine.device)}` : '',
    run.machine.threads !== null ? `threads ${h(run.machine.threads === '0' ? '0 (all cores)' : run.machine.threads)}` : '',
  ].filter(Boolean);
  rows.push(['Machine', machine.length ? machine.join('; ') : 'not recorded']);
  if (run.metrics && run.metrics.unreadable > 0) rows.push(['Unreadable lines', `${run.metrics.unreadable} line(s) of ${h(path.basename(run.metrics.file))} did not parse (skipped)`]);

  const out: string[] = ['<h2>Summary</h2>', table(['', ''], rows, 'kv')];

  // results at a glance
  const results = headline(run);
  if (results.length) out.push('<h3>Results</h3>', table(['Measure', 'Value'], results));

  // stage timings
  const timing: string[][] = [];
  const msKeys = [...new Set(recs.flatMap((r) => Object.keys(r).filter((k) => /^ms_/.test(k))))];
  const msMeans = msKeys.map((k) => [k, meanOf(recs, k)] as const);
  const msTotal = msMeans.reduce((s, [, m]) => s + (Number.isFinite(m.mean) ? m.mean : 0), 0);
  for (const [k, m] of msMeans) timing.push([h(k.slice(3).replace(/_/g, ' ')), `${num(m.mean)} ms`, msTotal > 0 ? `${((100 * m.mean) / msTotal).toFixed(1)} %` : '', `${m.n} iterations`]);
  for (const k of ['images_per_s', 'imagesPerS', 'it_per_s', 'images_per_s_train']) {
    const m = meanOf(recs, k);
    if (m.n) timing.push([h(k), `${num(m.mean)} per s (mean)`, '', `${m.n} lines`]);
  }
  const probe = meanOf(recs, 'probe_seconds');
  if (probe.n) timing.push(['probe', `${num(probe.mean)} s per probe`, '', `${probe.n} probes, ${h(formatDuration(probe.sum))} in all`]);
  const epochSeconds = meanOf(recs.filter((r) => r.kind === undefined || r.kind === 'epoch'), 'seconds');
  if (epochSeconds.n) timing.push(['epoch', `${h(formatDuration(epochSeconds.mean))} per epoch`, '', `${epochSeconds.n} epochs, ${h(formatDuration(epochSeconds.sum))} in all`]);
  out.push('<h3>Stage timings</h3>');
  out.push(timing.length ? `${table(['Stage', 'Mean', 'Share of a step', 'Over'], timing)}\n<p class="note">Means over the logged lines of ${h(path.basename(run.metrics?.file ?? 'metrics.jsonl'))} (ms_* fields: milliseconds per iteration in each stage of the training step).</p>` : none('No stage timings recorded (no ms_*, images/s or seconds fields in the metrics lines).'));

  // files
  out.push('<h3>Files</h3>');
  out.push(run.files.length ? table(['What', 'Path'], run.files.map((f) => [h(f.what), `<code>${h(f.path)}</code>`])) : none('No known files in this folder.'));
  if (run.log) {
    const tail = run.log.lines.slice(-200);
    out.push(`<details><summary>train.log (${run.log.lines.length} lines${tail.length < run.log.lines.length ? `, last ${tail.length} shown` : ''}): <code>${h(run.log.file)}</code></summary><pre>${h(tail.join('\n'))}</pre></details>`);
  }
  return out.join('\n');
}

/** The numbers a reader looks for first: the probe's first and last scores, validation, the evaluation's macro values. */
function headline(run: RunFolder): string[][] {
  const rows: string[][] = [];
  const recs = run.metrics?.records ?? [];
  const keys = [...new Set(recs.flatMap((r) => Object.keys(r)))].filter((k) => (/^probe_.*(auroc|auprc|acc)/i.test(k) || /^val.*(auroc|auprc|accuracy|dice)/i.test(k)) && !/loss/i.test(k));
  for (const k of keys) {
    const vals = recs.map((r) => [r, r[k]] as const).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
    if (!vals.length) continue;
    const at = (r: Record<string, unknown>) => (typeof r.iteration === 'number' ? `iteration ${r.iteration}` : typeof r.epoch === 'number' ? `epoch ${(r.epoch as number) + 1}` : '');
    const [r0, v0] = vals[0]!;
    const [r1, v1] = vals[vals.length - 1]!;
    // A pretraining run's first probe line (probe_baseline) measures the encoder it started from.
    const first = `${num(v0 as number)} (${r0.probe_baseline === true ? 'baseline: the starting encoder' : at(r0)})`;
    const d = (v1 as number) - (v0 as number);
    rows.push([h(k), vals.length > 1 ? `${first} → ${num(v1 as number)} (${at(r1)}), ${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(3)}` : `${num(v1 as number)} (${at(r1)})`]);
  }
  const e = run.evaluation;
  if (e?.kind === 'classification') {
    const m = e.metrics as { macro?: { auroc?: JsonMetric; auprc?: JsonMetric }; accuracy?: { value: number | null } };
    if (m.macro?.auroc) rows.push(['evaluation macro AUROC', h(formatCardCell(m.macro.auroc))]);
    if (m.macro?.auprc) rows.push(['evaluation macro AUPRC', h(formatCardCell(m.macro.auprc))]);
    if (m.accuracy && typeof m.accuracy.value === 'number') rows.push(['evaluation accuracy', (m.accuracy.value * 100).toFixed(2)]);
  } else if (e?.kind === 'segmentation') {
    const p = (e.metrics as { pooled?: Record<string, number> }).pooled ?? {};
    if (typeof p.dice_avg === 'number') rows.push(['evaluation dice_avg (pooled)', num(p.dice_avg)]);
  }
  return rows;
}

// ---- #curves ----

function curves(run: RunFolder, charts: readonly ChartSpec[], constants: readonly ConstantField[]): string {
  const out = ['<h2>Training curves</h2>'];
  if (run.metrics === null) {
    out.push(none(run.kind === 'evaluation' ? 'No training curves: an evaluation folder has no metrics.jsonl (the run that trained the model has them).' : `No training curves: no metrics.jsonl or history.jsonl in ${h(run.dir)}.`));
    return out.join('\n');
  }
  if (!charts.length && !constants.length) {
    out.push(none(`No training curves: ${h(run.metrics.file)} has no numeric fields against an iteration, step or epoch (${run.metrics.records.length} lines).`));
    return out.join('\n');
  }
  out.push(`<p class="note">From <code>${h(run.metrics.file)}</code> (${run.metrics.records.length} lines); epochs counted from 1. The collapse indicator is the teacher's output entropy over ln K: 1.0 means uniform outputs.</p>`);
  out.push('<div class="charts">');
  for (const c of charts) {
    out.push(`<figure class="chart" id="chart-${h(c.id)}">${lineChartSvg(c.series, { title: c.title, xLabel: c.xLabel, yLabel: c.yLabel, refLines: c.refLines, yScale: c.yScale })}</figure>`);
  }
  out.push('</div>');
  if (constants.length) out.push(`<p class="note">Constant over the run (not drawn): ${constants.map((c) => `${h(c.key)} = ${num(c.value)}`).join(', ')}.</p>`);
  return out.join('\n');
}

// ---- #evaluation ----

function evaluation(run: RunFolder): string {
  const out = ['<h2>Evaluation</h2>'];
  const e = run.evaluation;
  if (e === null) {
    const hint =
      run.kind === 'pretraining'
        ? ' Pretraining has none: its probe scores are under Training curves; evaluate an export with cxformer finetune / evaluate.'
        : '';
    out.push(none(`No evaluation: ${h(path.join(run.evaluationDir, 'metrics.json'))} not found.${hint}`));
    return out.join('\n');
  }
  out.push(`<p class="note">From <code>${h(e.file)}</code>.</p>`);
  if (e.kind === 'classification') out.push(classificationTable(e.metrics));
  else if (e.kind === 'segmentation') out.push(segmentationTable(e.metrics));
  else out.push(none('metrics.json is neither a classification (format cxformer-eval/1) nor a segmentation evaluation; its content:'), `<pre>${h(JSON.stringify(e.metrics, null, 2))}</pre>`);
  return out.join('\n');
}

interface ClassRow {
  class: string;
  n: number;
  n_pos: number;
  auroc: JsonMetric;
  auprc: JsonMetric;
  sensitivity: JsonMetric;
  specificity: JsonMetric;
  brier: JsonMetric;
}

/** The table of report.md (src/eval/report.ts renderMarkdown), with the same statistic and the same sentence on it. */
function classificationTable(raw: Record<string, unknown>): string {
  const m = raw as {
    n?: number;
    n_patients?: number | null;
    n_classes?: number;
    n_bootstrap?: number;
    ci_level?: number | null;
    bootstrap_unit?: string | null;
    seed?: number | null;
    threshold?: number | number[];
    per_class?: ClassRow[];
    macro?: { auroc?: JsonMetric; auprc?: JsonMetric; brier?: JsonMetric; note?: string };
    micro?: { auroc?: JsonMetric; auprc?: JsonMetric };
    accuracy?: { value: number | null; n: number };
    label_type?: string;
  };
  const pc = (r: JsonMetric | undefined): string => (r === undefined ? '' : r.value === null ? `— (${h(r.reason)})` : (r.value * 100).toFixed(2));
  const br = (r: JsonMetric | undefined): string => (r === undefined ? '' : r.value === null ? `— (${h(r.reason)})` : r.value.toFixed(4));
  const cell = (r: JsonMetric | undefined): string => (r === undefined ? '' : h(formatCardCell(r)));
  const out: string[] = [];
  const who = m.n_patients !== null && m.n_patients !== undefined ? `${m.n} images of ${m.n_patients} patients` : `${m.n ?? '?'} images`;
  out.push(`<p>${h(who)}, ${m.n_classes ?? m.per_class?.length ?? '?'} classes${m.label_type ? ` (${h(m.label_type)})` : ''}.</p>`);
  const level = m.ci_level ?? 0.95;
  const statistic =
    (m.n_bootstrap ?? 0) > 0
      ? `AUROC and AUPRC: the bootstrap median [${((1 - level) * 50).toFixed(1)}th, ${((1 + level) * 50).toFixed(1)}th percentile] over ${m.n_bootstrap} resamples of ${m.bootstrap_unit === 'patient' ? 'patients' : 'images'} (seed ${m.seed}), × 100, as report.md and the plot legends show; point estimates are in metrics.json.`
      : 'AUROC and AUPRC: point estimates × 100 (no bootstrap), as report.md shows.';
  out.push(`<p class="statistic"><strong>Statistic shown.</strong> ${h(statistic)} Sensitivity and specificity × 100 at threshold ${h(typeof m.threshold === 'number' ? String(m.threshold) : 'per class')} (positive when p ≥ threshold); Brier score = mean (p − y)².</p>`);
  const rows = (m.per_class ?? []).map((c) => [h(c.class), String(c.n), String(c.n_pos), cell(c.auroc), cell(c.auprc), pc(c.sensitivity), pc(c.specificity), br(c.brier)]);
  rows.push(['<strong>Macro</strong>', '', '', cell(m.macro?.auroc), cell(m.macro?.auprc), '', '', br(m.macro?.brier)]);
  rows.push(['<strong>Micro</strong>', '', '', cell(m.micro?.auroc), cell(m.micro?.auprc), '', '', '']);
  out.push(table(['Class', 'n', 'Positives', 'AUROC', 'AUPRC', 'Sensitivity', 'Specificity', 'Brier'], rows, 'metrics'));
  if (m.accuracy) out.push(`<p>Accuracy (argmax): ${m.accuracy.value === null ? '— (no labelled rows)' : `${(m.accuracy.value * 100).toFixed(2)} over ${m.accuracy.n} images`}.</p>`);
  if (m.macro?.note) out.push(`<p class="note">Note: ${h(m.macro.note)}.</p>`);
  return out.join('\n');
}

/** The table of the segmentation report.md (src/segment/evaluate.ts renderSegReport). */
function segmentationTable(raw: Record<string, unknown>): string {
  const m = raw as {
    nImages?: number;
    pooled?: Record<string, number>;
    perImage?: Record<string, { mean: number; median: number; min: number }>;
    bootstrap?: { n: number; level: number; unit: string; nUnits: number; seed: number; pooled: Record<string, { lo: number | null; hi: number | null }>; meanPerImage: Record<string, { lo: number | null; hi: number | null }> } | null;
    conventions?: string;
  };
  const f = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(4));
  const ci = (n: string, kind: 'pooled' | 'meanPerImage'): string => {
    const b = m.bootstrap?.[kind]?.[n];
    return b && b.lo !== null ? ` [${f(b.lo)}, ${f(b.hi)}]` : '';
  };
  const names = Object.keys(m.perImage ?? {});
  const out: string[] = [];
  const b = m.bootstrap;
  out.push(`<p>${m.nImages ?? '?'} images.</p>`);
  out.push(
    `<p class="statistic"><strong>Statistic shown.</strong> ${h(
      b ? `Dice point estimates with ${Math.round(b.level * 100)} % bootstrap percentile intervals over ${b.n} resamples of ${b.nUnits} ${b.unit}s (seed ${b.seed}), as report.md shows.` : 'Dice point estimates (no bootstrap), as report.md shows.',
    )}</p>`,
  );
  const rows = names.map((n) => [h(n), `${f(m.pooled?.[n])}${ci(n, 'pooled')}`, `${f(m.perImage?.[n]?.mean)}${ci(n, 'meanPerImage')}`, f(m.perImage?.[n]?.median), f(m.perImage?.[n]?.min)]);
  rows.push(['<strong>dice_avg</strong> (3 classes)', `${f(m.pooled?.dice_avg)}${ci('dice_avg', 'pooled')}`, '', '', '']);
  out.push(table(['Structure', 'Pooled Dice', 'Mean per-image Dice', 'Median', 'Min'], rows, 'metrics'));
  if (m.conventions) out.push(`<p class="note">${h(m.conventions)}</p>`);
  return out.join('\n');
}

// ---- #plots ----

/** An SVG file's text for inlining in HTML: no XML declaration, no namespace (HTML parsers add it), no scripts. */
export function inlineSvg(svg: string): string {
  return svg
    .replace(/<\?xml[^>]*\?>\s*/g, '')
    .replace(/<!DOCTYPE[^>]*>\s*/gi, '')
    .replace(/\sxmlns(:\w+)?="[^"]*"/g, '')
    .replace(/<script[\s\S]*?<\/script>/gi, '')
    .trim();
}

const dataUri = (png: Buffer): string => `data:image/png;base64,${png.toString('base64')}`;

function plots(run: RunFolder): string {
  const out = ['<h2>Plots</h2>'];
  if (!run.plots.length && !run.overlays.total) {
    out.push(none(`No plots: no roc, pr, calibration or dice_per_image plot and no overlays/ in ${h(run.evaluationDir)}.`));
    return out.join('\n');
  }
  if (run.plots.length) {
    out.push('<div class="plots">');
    for (const p of run.plots) {
      const body = p.svg !== undefined ? inlineSvg(p.svg) : `<img alt="${h(plotTitle(p.name))}" src="${dataUri(p.png!)}">`;
      out.push(`<figure class="plot" id="plot-${h(p.name)}">${body}<figcaption>${h(plotTitle(p.name))}: <code>${h(p.file)}</code></figcaption></figure>`);
    }
    out.push('</div>');
  }
  if (run.overlays.total) {
    const more = run.overlays.total - run.overlays.shown.length;
    out.push(`<h3 id="overlays">Segmentation overlays</h3><p class="note">${run.overlays.shown.length} of ${run.overlays.total} from <code>${h(run.overlays.dir)}</code>${more > 0 ? ` (${more} more there)` : ''}.</p>`);
    out.push('<div class="overlays">');
    for (const o of run.overlays.shown) out.push(`<figure class="overlay"><img alt="${h(path.basename(o.file))}" src="${dataUri(o.png)}"><figcaption>${h(path.basename(o.file))}</figcaption></figure>`);
    out.push('</div>');
  }
  return out.join('\n');
}

// ---- #config ----

function config(run: RunFolder): string {
  const out = ['<h2>Configuration</h2>'];
  if (run.config === null) {
    const why = run.kind === 'evaluation' ? ' (cxformer evaluate records its settings in metrics.json: images, bootstrap resamples, seed, threshold)' : run.kind === 'linear probe' ? ' (a linear probe records its settings in head.safetensors metadata)' : '';
    out.push(none(`No settings file in ${h(run.dir)}: none of resolved.yaml, finetune.json, run.json${why}.`));
    return out.join('\n');
  }
  out.push(`<details><summary>${h(path.basename(run.config.file))}: <code>${h(run.config.file)}</code></summary><pre>${h(run.config.text)}</pre></details>`);
  return out.join('\n');
}

// ---- the page ----

const CSS = `
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:0;color:#1a1a1a;background:#fafafa;font-size:15px;line-height:1.45}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0}
nav{padding:8px 28px;background:#e8eef5;position:sticky;top:0;z-index:1}nav a{margin-right:18px;color:#1f3a5f}
main{padding:8px 28px 28px}section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:6px 18px 16px}
h2{font-size:19px;border-bottom:1px solid #eee;padding-bottom:4px}h3{font-size:16px;margin-top:18px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f2f2f2}table.kv thead{display:none}table.kv td:first-child{font-weight:bold;white-space:nowrap}
table.metrics td{font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-size:13px;word-break:break-all}pre{background:#f6f6f6;padding:10px;overflow:auto;max-height:520px;font-size:12.5px}
.none{color:#8a4b00;font-style:italic}.note{color:#555;font-size:13.5px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}.plots,.overlays{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}
figure svg,figure img{max-width:100%;height:auto;border:1px solid #eee}.overlay img{width:512px;max-width:100%;image-rendering:auto}
figcaption{font-size:12.5px;color:#555;max-width:640px}footer{color:#777;font-size:12.5px;padding:0 28px 20px}
`;

/** Marks the body once the DOM is there: data-rendered, the ids of the sections found, the number of SVG charts. */
const SCRIPT = `(function(){var ids=[];document.querySelectorAll('main>section[id]').forEach(function(s){ids.push(s.id)});` +
  `var b=document.body;b.setAttribute('data-sections',ids.join(' '));b.setAttribute('data-svgs',String(document.querySelectorAll('svg').length));` +
  `b.setAttribute('data-rendered','true')})();`;

/** The page of a run folder read by readRunFolder (see the module docs). */
export function renderRunReport(run: RunFolder, o: RenderOptions = {}): string {
  const prototypes = Number((run.config?.value as { dino?: { head_n_prototypes?: unknown } } | null)?.dino?.head_n_prototypes);
  const { charts, constants } = planCharts(run.metrics?.records ?? [], Number.isFinite(prototypes) ? { prototypes } : {});
  const hash = createHash('sha256').update(SCRIPT).digest('base64');
  // No fetch of any kind: images only from data: URIs, inline style, and only the script above.
  const csp = `default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-${hash}'`;
  const name = path.basename(run.dir);
  const sections: Record<(typeof SECTION_IDS)[number], string> = {
    summary: summary(run),
    curves: curves(run, charts, constants),
    evaluation: evaluation(run),
    plots: plots(run),
    config: config(run),
  };
  const titles: Record<(typeof SECTION_IDS)[number], string> = { summary: 'Summary', curves: 'Curves', evaluation: 'Evaluation', plots: 'Plots', config: 'Configuration' };
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${h(`${name}: ${run.kind} report (cxformer)`)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body data-rendered="false">',
    `<header><h1>${h(name)}</h1><p>${h(KIND_TITLE[run.kind])} · <code>${h(run.dir)}</code></p></header>`,
    `<nav>${SECTION_IDS.map((id) => `<a href="#${id}">${titles[id]}</a>`).join('')}</nav>`,
    '<main>',
    ...SECTION_IDS.map((id) => `<section id="${id}">\n${sections[id]}\n</section>`),
    '</main>',
    `<footer>Written by cxformer report at ${h(iso(o.generatedAt ?? new Date()))} from the files of ${h(run.dir)}; self-contained (no network).</footer>`,
    `<script>${SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
