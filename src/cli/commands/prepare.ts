/**
 * `cxformer prepare`: decode a dataset once into a prepared cache (src/cache/format.md).
 *
 * cxformer prepare --out DIR --root ROOT [--manifest CSV] [--path-column Path] [--size 518|none]
 *   [--bit-depth 8|16] [--workers N] [--max-bad-fraction F] [--min-side N] [--overwrite] [--retry-skipped]
 *   [--allow-missing] [--quiet]
 *
 * The manifest row of each image (column → cell) is stored as the record's metadata. Ctrl-C stops the run
 * cleanly (exit 130); running the same command again resumes it.
 */
import { availableParallelism } from 'node:os';

import { prepareCache, type PrepareProgress, type PrepareResult } from '../../cache/prepare.js';
import { loadImageDataset } from '../../data/manifest.js';
import { CxformerError } from '../../native/load.js';
import { progress } from './common.js';

const USAGE = 'Example usage: cxformer prepare --out cache/cxr518 --root /data/chexpert --manifest train.csv --size 518 --bit-depth 8';

function argError(msg: string): CxformerError {
  return new CxformerError('CXF_ARG', `prepare: ${msg}\n${USAGE}`);
}

/** The value of `--name`, under its kebab-case or camelCase key. */
function opt(a: Record<string, unknown>, name: string): unknown {
  if (a[name] !== undefined) return a[name];
  const camel = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  return a[camel];
}

function stringArg(a: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const v = opt(a, name);
  if (v === undefined || v === null) {
    if (required) throw argError(`--${name} is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v.trim() === '') throw argError(`--${name}: expected a non-empty value, got ${JSON.stringify(v)}`);
  return v;
}

function intArg(a: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = opt(a, name);
  if (v === undefined) return undefined;
  const x = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!(Number.isSafeInteger(x) && x >= min && x <= max)) throw argError(`--${name}: expected an integer in ${min}..${max}, got ${String(v)}`);
  return x;
}

function boolArg(a: Record<string, unknown>, name: string): boolean {
  const v = opt(a, name);
  if (v === undefined || v === false || v === 'false') return false;
  if (v === true || v === 'true' || v === '') return true;
  throw argError(`--${name}: expected no value (a flag), got ${JSON.stringify(v)}`);
}

/** The run's options from the command-line arguments. @throws CxformerError CXF_ARG */
export function parsePrepareArgs(a: Record<string, unknown>) {
  const out = stringArg(a, 'out', true)!;
  const root = stringArg(a, 'root', true)!;
  const manifest = stringArg(a, 'manifest', false);
  const pathColumn = stringArg(a, 'path-column', false);
  if (pathColumn !== undefined && manifest === undefined) throw argError('--path-column needs --manifest');
  const sizeRaw = opt(a, 'size');
  let shorterSide: number | null = 518;
  if (sizeRaw !== undefined) {
    const s = String(sizeRaw).trim();
    if (s === 'none') shorterSide = null;
    else if (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535) shorterSide = Number(s);
    else throw argError(`--size: expected the shorter side in px (e.g. 518 or 1024) or 'none' (keep the decoded size), got ${JSON.stringify(sizeRaw)}`);
  }
  const bd = opt(a, 'bit-depth');
  let bitDepth: 8 | 16 = 8;
  if (bd !== undefined) {
    const s = String(bd).trim();
    if (s === '8') bitDepth = 8;
    else if (s === '16') bitDepth = 16;
    else throw argError(`--bit-depth: expected 8 or 16, got ${JSON.stringify(bd)}`);
  }
  const workers = intArg(a, 'workers', 1, 1024) ?? availableParallelism();
  const minSide = intArg(a, 'min-side', 1, 65535);
  const mbf = opt(a, 'max-bad-fraction');
  let maxBadFraction: number | undefined;
  if (mbf !== undefined) {
    const x = typeof mbf === 'number' ? mbf : typeof mbf === 'string' && mbf.trim() !== '' ? Number(mbf) : NaN;
    if (!(x >= 0 && x <= 1)) throw argError(`--max-bad-fraction: expected a number in [0, 1] (e.g. 0.01 for 1 %), got ${JSON.stringify(mbf)}`);
    maxBadFraction = x;
  }
  return {
    out,
    root,
    manifest,
    pathColumn,
    shorterSide,
    bitDepth,
    workers,
    minSide,
    maxBadFraction,
    overwrite: boolArg(a, 'overwrite'),
    retrySkipped: boolArg(a, 'retry-skipped'),
    allowMissing: boolArg(a, 'allow-missing'),
    quiet: boolArg(a, 'quiet'),
  };
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let x = n;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${u === 0 ? x : x.toFixed(2)} ${units[u]}`;
}

/** The progress line. */
export function formatProgress(p: PrepareProgress): string {
  const pct = p.total === 0 ? 100 : (100 * p.done) / p.total;
  const left = p.total - p.done;
  const eta = p.imagesPerSecond > 0 ? ` ETA ${duration(left / p.imagesPerSecond)},` : '';
  return `prepare: ${p.done}/${p.total} (${pct.toFixed(1)} %), ${p.skipped} skipped, ${p.imagesPerSecond.toFixed(1)} images/s,${eta} ${duration(p.elapsedSeconds)} elapsed`;
}

/** The final summary line. */
export function formatSummary(r: PrepareResult): string {
  const what = `${r.settings.shorterSide === null ? 'original size' : `shorter side ${r.settings.shorterSide} px`}, ${r.settings.bitDepth}-bit`;
  const reasons = Object.entries(
    r.skipped.reduce<Record<string, number>>((acc, s) => {
      acc[s.reason] = (acc[s.reason] ?? 0) + 1;
      return acc;
    }, {}),
  )
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  const skipped = r.skipped.length === 0 ? '0 skipped' : `${r.skipped.length} skipped (${reasons}; see ${r.reportPath})`;
  const extra = r.extraRecords > 0 ? `; ${r.extraRecords} records of earlier items not in this dataset kept` : '';
  const meta = r.metaUpdated > 0 ? `; metadata of ${r.metaUpdated} records updated` : '';
  if (r.nothingToDo) return `prepare: ${r.out} is complete and up to date (${r.records} records, ${skipped}, ${what}); nothing to do${extra}`;
  const how = r.mode === null ? '' : `; ${r.imagesPerSecond.toFixed(1)} images/s with ${r.mode === 'threads' ? `${r.workers} worker threads` : `${r.workers} in-process tasks`}`;
  return (
    `prepare: ${r.items} items → ${r.records} records in ${r.out} (${r.written} written, ${r.cached} already cached${r.repaired ? ', torn tail of an interrupted run removed' : ''}), ` +
    `${skipped}; ${what}, ${bytes(r.pixelsBytes)}${how}, ${r.seconds.toFixed(1)} s${extra}${meta}`
  );
}

/** cxformer prepare --out DIR --root ROOT [...] */
export async function run(a: Record<string, unknown>): Promise<number> {
  const o = parsePrepareArgs(a);
  const dataset = opt(a, 'dataset');
  let items: Array<{ id: string; path: string; meta: Record<string, unknown> }>;
  let skippedMissing = 0;
  if (dataset !== undefined && dataset !== 'folder' && dataset !== 'csv') {
    // A public dataset in its official layout: the index keeps dataset, patient, study, view, labels, split, masks.
    const views = opt(a, 'views');
    const split = opt(a, 'split');
    const { loadDataset } = await import('../../datasets/index.js');
    const ds = await loadDataset({
      name: String(dataset),
      root: o.root,
      ...(views !== undefined ? { views: String(views).split(',').map((v) => v.trim()) } : {}),
      ...(split !== undefined ? { split: String(split) } : {}),
    } as unknown as import('../../datasets/index.js').DatasetSpec);
    items = ds.records.map((r) => ({
      id: `${r.dataset}:${r.id}`,
      path: r.path,
      meta: { dataset: r.dataset, patient: r.patient, study: r.study, view: r.view, sex: r.sex, age: r.age, split: r.split, labels: r.labels, masks: r.masks },
    }));
  } else {
    const ds = await loadImageDataset({
      root: o.root,
      ...(o.manifest !== undefined ? { manifest: o.manifest } : {}),
      ...(o.pathColumn !== undefined ? { pathColumn: o.pathColumn } : {}),
      allowMissing: o.allowMissing,
    });
    items = ds.items.map((it) => ({ id: it.id, path: it.path, meta: it.row ?? {} }));
    skippedMissing = ds.skippedMissing;
  }
  const bar = progress(o.quiet);
  if (skippedMissing > 0) bar.done(`prepare: ${skippedMissing} manifest rows skipped because their file does not exist (--allow-missing)`);
  const tty = process.stderr.isTTY === true;
  const every = tty ? 200 : 10_000;
  let last = 0;
  const ac = new AbortController();
  const onSigint = () => ac.abort(Object.assign(new Error('prepare: interrupted'), { name: 'AbortError', code: 'ABORT_ERR' }));
  process.once('SIGINT', onSigint);
  try {
    const r = await prepareCache({
      out: o.out,
      items,
      shorterSide: o.shorterSide,
      bitDepth: o.bitDepth,
      workers: o.workers,
      ...(o.maxBadFraction !== undefined ? { maxBadFraction: o.maxBadFraction } : {}),
      ...(o.minSide !== undefined ? { minSide: o.minSide } : {}),
      overwrite: o.overwrite,
      retrySkipped: o.retrySkipped,
      signal: ac.signal,
      onProgress: (p) => {
        const now = performance.now();
        if (now - last < every && p.done < p.total) return;
        last = now;
        bar.update(formatProgress(p));
      },
    });
    bar.done(formatSummary(r));
    return 0;
  } catch (e) {
    if (ac.signal.aborted) {
      bar.done(`prepare: interrupted; the records written so far are kept in ${o.out}: run the same command again to resume`);
      return 130;
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}
