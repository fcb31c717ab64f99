/**
 * What the run report page (src/report/page.ts) shows, read from a run folder without computing anything (no
 * LibTorch, no sharp): the kind of run, where its files are, when it ran and how long its stages took, its
 * metrics lines, its evaluation (metrics.json of eval/ or of the folder itself), plots, overlays and settings.
 *
 * The kind comes from the file each command writes first:
 *   resolved.yaml   `cxformer train` (pretraining)                  metrics.jsonl: one line per iteration, probe lines
 *   finetune.json   `cxformer finetune --mode full`                 metrics.jsonl: one line per epoch
 *   run.json        `cxformer finetune --task segmentation`         metrics.jsonl: {"kind":"step"} and {"kind":"epoch"}
 *   head.safetensors + history.jsonl   `cxformer finetune` (linear) history.jsonl: one line per epoch
 *   metrics.json    `cxformer evaluate` (classification or segmentation)
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import { CxformerError } from '../native/load.js';

export type RunKind = 'pretraining' | 'linear probe' | 'full fine-tuning' | 'segmentation' | 'evaluation';

/** One line of metrics.jsonl / history.jsonl. */
export type MetricsRecord = Record<string, unknown>;

export interface RunFile {
  what: string;
  path: string;
}

export interface EvaluationData {
  dir: string;
  file: string;
  kind: 'classification' | 'segmentation' | 'unknown';
  /** metrics.json as read (src/eval/report.ts MetricsJson or src/segment/evaluate.ts SegMetricsJson). */
  metrics: Record<string, unknown>;
}

export interface PlotFile {
  name: string;
  file: string;
  /** Inline SVG text (svg files), else the PNG bytes. */
  svg?: string;
  png?: Buffer;
}

export interface RunFolder {
  /** Absolute path. */
  dir: string;
  kind: RunKind;
  /** Files and folders of the run that exist, absolute paths. */
  files: RunFile[];
  /** metrics.jsonl (history.jsonl for a linear probe), or null when there is none. */
  metrics: { file: string; records: MetricsRecord[]; unreadable: number } | null;
  /** train.log: its first and last timestamps and lines. */
  log: { file: string; first: Date | null; last: Date | null; lines: string[] } | null;
  /** The settings the run recorded (resolved.yaml, finetune.json, run.json). */
  config: { file: string; text: string; value: unknown } | null;
  evaluation: EvaluationData | null;
  /** Where metrics.json was looked for when there is none. */
  evaluationDir: string;
  plots: PlotFile[];
  overlays: { total: number; dir: string; shown: { file: string; png: Buffer }[] };
  /** Hosts named by the TensorBoard event files (events.out.tfevents.<time>.<host>.<pid>.<n>), device and threads. */
  machine: { hosts: string[]; device: string | null; threads: string | null };
  /** Last-modified time of the newest metrics/evaluation file, when the log has no timestamps. */
  modified: Date | null;
}

export interface ReadRunOptions {
  /** Overlays embedded at most. @default 24 */
  maxOverlays?: number;
}

/** The marker files of each kind, in the order they are tested. */
const MARKERS: readonly [file: string, kind: RunKind, command: string][] = [
  ['resolved.yaml', 'pretraining', 'cxformer train'],
  ['finetune.json', 'full fine-tuning', 'cxformer finetune --mode full'],
  ['run.json', 'segmentation', 'cxformer finetune --task segmentation'],
  ['history.jsonl', 'linear probe', 'cxformer finetune (linear probe)'],
  ['metrics.json', 'evaluation', 'cxformer evaluate'],
];

/** Files and folders listed in the summary when present, with what they are. */
const KNOWN_FILES: readonly [name: string, what: string][] = [
  ['metrics.jsonl', 'metrics, one JSON line per logged step/epoch'],
  ['history.jsonl', 'head training, one JSON line per epoch'],
  ['train.log', 'log'],
  ['resolved.yaml', 'resolved configuration'],
  ['finetune.json', 'resolved fine-tuning settings'],
  ['run.json', 'resolved segmentation settings'],
  ['checkpoints', 'training checkpoints'],
  ['exported', 'exported teacher (Hugging Face folder + dino_head.safetensors)'],
  ['best', 'selected model (best/model) and head'],
  ['best.safetensors', 'selected segmentation weights'],
  ['last.safetensors', 'last training state (resume)'],
  ['head.safetensors', 'classification head'],
  ['eval', 'evaluation report (metrics.json, report.md, plots)'],
  ['metrics.json', 'evaluation metrics with bootstrap CIs'],
  ['report.md', 'evaluation report (Markdown)'],
  ['predictions.csv', 'predictions'],
  ['per_image.csv', 'per-image Dice'],
  ['overlays', 'segmentation overlays'],
  ['predictions', 'predicted masks'],
  ['data', 'generated phantom data'],
];

/** Evaluation plots embedded when present (svg preferred to png). */
const PLOTS: readonly [name: string, title: string][] = [
  ['roc', 'ROC curves'],
  ['pr', 'Precision–recall curves'],
  ['calibration', 'Calibration'],
  ['dice_per_image', 'Per-image Dice'],
];

const EVENTS_RE = /^events\.out\.tfevents\.\d+\.(.+)\.\d+\.\d+$/;
const LOG_TIME = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s/;

/** Which kind of run `dir` holds, or null (see the module docs). */
export function detectKind(dir: string): RunKind | null {
  for (const [file, kind] of MARKERS) if (existsSync(path.join(dir, file))) return kind;
  return null;
}

/** Parses JSON lines; a line that does not parse (a run killed mid-write) is counted, not fatal. */
export function parseJsonl(text: string): { records: MetricsRecord[]; unreadable: number } {
  const records: MetricsRecord[] = [];
  let unreadable = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) records.push(v as MetricsRecord);
      else unreadable++;
    } catch {
      unreadable++;
    }
  }
  return { records, unreadable };
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The value at a dotted path of a parsed YAML/JSON tree, as text, or null. */
function pick(tree: unknown, ...paths: string[]): string | null {
  for (const p of paths) {
    let v: unknown = tree;
    for (const k of p.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
    if (v !== undefined && v !== null && typeof v !== 'object') return String(v);
  }
  return null;
}

/** Reads everything the report shows from the run folder `dir` (see the module docs). */
export async function readRunFolder(dir: string, opts: ReadRunOptions = {}): Promise<RunFolder> {
  const abs = path.resolve(dir);
  let st;
  try {
    st = await stat(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new CxformerError('CXF_INPUT', `${abs}: cannot read it (${(e as Error).message})`);
    throw new CxformerError('CXF_INPUT', `${abs}: no such folder (expected a run folder of cxformer train, finetune or evaluate)`);
  }
  if (!st.isDirectory()) throw new CxformerError('CXF_INPUT', `${abs}: expected a run folder, found a file`);
  const kind = detectKind(abs);
  if (kind === null) {
    throw new CxformerError(
      'CXF_INPUT',
      `${abs} is not a cxformer run folder: expected one of ${MARKERS.map(([f, , c]) => `${f} (${c})`).join(', ')}, found none`,
    );
  }

  const names = new Set(await readdir(abs));
  const files: RunFile[] = KNOWN_FILES.filter(([n]) => names.has(n)).map(([n, what]) => ({ what, path: path.join(abs, n) }));
  const events = [...names].filter((n) => n.startsWith('events.out.tfevents.')).sort();
  if (events.length) files.push({ what: `TensorBoard event files (${events.length}): tensorboard --logdir ${abs}`, path: path.join(abs, events[events.length - 1]!) });

  // metrics lines
  const metricsName = names.has('metrics.jsonl') ? 'metrics.jsonl' : names.has('history.jsonl') ? 'history.jsonl' : null;
  let metrics: RunFolder['metrics'] = null;
  if (metricsName !== null) {
    const file = path.join(abs, metricsName);
    metrics = { file, ...parseJsonl((await readText(file)) ?? '') };
  }

  // the log
  let log: RunFolder['log'] = null;
  const logText = await readText(path.join(abs, 'train.log'));
  if (logText !== null) {
    const lines = logText.split('\n').filter((l) => l.trim() !== '');
    const times = lines.map((l) => LOG_TIME.exec(l)?.[1]).filter((t): t is string => t !== undefined).map((t) => new Date(t));
    log = { file: path.join(abs, 'train.log'), first: times[0] ?? null, last: times[times.length - 1] ?? null, lines };
  }

  // settings
  let config: RunFolder['config'] = null;
  for (const name of ['resolved.yaml', 'finetune.json', 'run.json']) {
    const file = path.join(abs, name);
    const text = await readText(file);
    if (text === null) continue;
    let value: unknown = null;
    try {
      value = name.endsWith('.yaml') ? load(text) : JSON.parse(text);
    } catch {
      // shown as text all the same
    }
    config = { file, text: name.endsWith('.json') && value !== null ? JSON.stringify(value, null, 2) : text, value };
    break;
  }

  // the evaluation: the folder itself (cxformer evaluate) or its eval/
  const evaluationDir = kind === 'evaluation' ? abs : path.join(abs, 'eval');
  let evaluation: EvaluationData | null = null;
  const evalFile = path.join(evaluationDir, 'metrics.json');
  const evalText = await readText(evalFile);
  if (evalText !== null) {
    let m: unknown;
    try {
      m = JSON.parse(evalText);
    } catch (e) {
      throw new CxformerError('CXF_INPUT', `${evalFile}: not JSON (${(e as Error).message})`);
    }
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new CxformerError('CXF_INPUT', `${evalFile}: expected a JSON object, found ${Array.isArray(m) ? 'an array' : String(m)}`);
    const rec = m as Record<string, unknown>;
    const ek = rec.format === 'cxformer-eval/1' ? 'classification' : rec.pooled !== undefined && typeof rec.pooled === 'object' ? 'segmentation' : 'unknown';
    evaluation = { dir: evaluationDir, file: evalFile, kind: ek, metrics: rec };
  }

  // plots and overlays
  const plots: PlotFile[] = [];
  for (const [name] of PLOTS) {
    const svg = await readText(path.join(evaluationDir, `${name}.svg`));
    if (svg !== null) {
      plots.push({ name, file: path.join(evaluationDir, `${name}.svg`), svg });
      continue;
    }
    const pngFile = path.join(evaluationDir, `${name}.png`);
    if (existsSync(pngFile)) plots.push({ name, file: pngFile, png: await readFile(pngFile) });
  }
  const overlayDir = path.join(evaluationDir, 'overlays');
  const overlayNames = existsSync(overlayDir) ? (await readdir(overlayDir)).filter((n) => n.toLowerCase().endsWith('.png')).sort() : [];
  const shown = [];
  for (const n of overlayNames.slice(0, opts.maxOverlays ?? 24)) shown.push({ file: path.join(overlayDir, n), png: await readFile(path.join(overlayDir, n)) });

  // machine
  const hosts = [...new Set(events.map((n) => EVENTS_RE.exec(n)?.[1]).filter((h): h is string => h !== undefined))];
  const cv = config?.value;
  const machine = {
    hosts,
    device: pick(cv, 'compute.device', 'device', 'backbone.device'),
    threads: pick(cv, 'compute.threads', 'threads', 'backbone.threads'),
  };

  let modified: Date | null = null;
  for (const f of [metrics?.file, evaluation?.file]) {
    if (f === undefined) continue;
    const t = (await stat(f)).mtime;
    if (modified === null || t > modified) modified = t;
  }

  return {
    dir: abs,
    kind,
    files,
    metrics,
    log,
    config,
    evaluation,
    evaluationDir,
    plots,
    overlays: { total: overlayNames.length, dir: overlayDir, shown },
    machine,
    modified,
  };
}

/** The title of an evaluation plot file name (roc, pr, …). */
export function plotTitle(name: string): string {
  return PLOTS.find(([n]) => n === name)?.[1] ?? name;
}
