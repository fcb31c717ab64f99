/**
 * `prepareCache`: decode every dataset image once, convert it to gray at the chosen depth, resize its shorter
 * side, and append it to a packed, memory-mappable cache (format.md describes the files).
 *
 * Crash safety: records are appended to pixels.bin in item order; every commit (at most 64 records or 0.5 s
 * apart, and at the end) first `fdatasync`s pixels.bin, then appends the records' lines to index.jsonl. An index
 * line therefore never names pixels that are not on disk, and a run killed at any moment leaves: complete
 * records with index lines, complete or partial records without (the torn tail of pixels.bin), and possibly a
 * torn last index line. A resumed run drops the torn index line, truncates pixels.bin to the end of the last
 * indexed record, and appends the remaining items in item order — so an interrupted and resumed run writes
 * the same bytes as an uninterrupted one.
 */
import { availableParallelism, hostname } from 'node:os';
import { mkdir, open, readFile, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { writeFileAtomic } from '../data/fsutil.js';
import { CxformerError } from '../native/load.js';
import type { ItemOutcome } from './convert.js';
import { CacheError } from './errors.js';
import {
  ALIGNMENT,
  alignUp,
  CACHE_FORMAT,
  CACHE_VERSION,
  type CacheInfo,
  type CacheRecord,
  type CacheReport,
  type CacheSettings,
  FILES,
  formatInfo,
  formatRecord,
  makeSettings,
  parseIndex,
  parseInfo,
  parseReport,
  SKIP_REASONS,
  type SkippedItem,
  type SkipReason,
  settingsDiff,
} from './format.js';
import { createExecutor, type ExecutionMode, type Executor } from './pool.js';

/** One image to prepare. */
export interface PrepareItem {
  /** Unique, non-empty id (the dataset's relative path, for example). */
  id: string;
  /** The image file. */
  path: string;
  /** Metadata stored verbatim (as JSON) in the record's index line: dataset, patient, study, view, labels, … */
  meta?: Record<string, unknown>;
}

/** Progress of a run, reported after each item. */
export interface PrepareProgress {
  /** Items accounted for: cached before this run, written or skipped. */
  done: number;
  total: number;
  /** Records written by this run. */
  written: number;
  /** Items skipped (this run's and those carried over from the report of a complete cache). */
  skipped: number;
  /** Items already in the cache when the run started. */
  cached: number;
  /** Items processed (written or skipped) by this run per second of its processing time. */
  imagesPerSecond: number;
  elapsedSeconds: number;
}

export interface PrepareOptions {
  /** Cache folder (created). */
  out: string;
  items: readonly PrepareItem[];
  /** Shorter side of the stored images in px, or null to keep the decoded size. */
  shorterSide: number | null;
  /** 8: the 8-bit gray CXformer trains on; 16: keeps the precision of 12- to 16-bit sources. */
  bitDepth: 8 | 16;
  /** Worker threads (or items in flight in-process). @default os.availableParallelism() */
  workers?: number;
  /** The run fails once more than this fraction of the items is unusable. @default 0.01 */
  maxBadFraction?: number;
  /** Images whose shorter side is below this are skipped as 'too-small'. @default 32 */
  minSide?: number;
  /** Discard any existing cache in `out` and rebuild it from scratch. @default false */
  overwrite?: boolean;
  /** Try again the items that the report of a complete cache lists as skipped. @default false */
  retrySkipped?: boolean;
  /** 'auto': worker threads when the compiled worker exists, else in-process (see pool.ts). @default 'auto' */
  mode?: ExecutionMode;
  /** Aborting stops the run promptly, leaving a cache that the next run resumes. */
  signal?: AbortSignal;
  onProgress?: (p: PrepareProgress) => void;
}

export interface PrepareResult {
  out: string;
  settings: CacheSettings;
  /** How the work ran; null when there was nothing to do. */
  mode: 'threads' | 'inline' | null;
  workers: number;
  items: number;
  /** Records in the cache now. */
  records: number;
  /** Records written by this run. */
  written: number;
  /** Items already in the cache at the start. */
  cached: number;
  /** Every skipped item, in item order (this run's and those carried over). */
  skipped: SkippedItem[];
  /** Records whose id is not among `items` (kept). */
  extraRecords: number;
  /** Records whose metadata was updated (index.jsonl rewritten, pixels untouched). */
  metaUpdated: number;
  /** Whether a torn tail of an interrupted run was removed. */
  repaired: boolean;
  /** True when the cache was complete and up to date: nothing was written. */
  nothingToDo: boolean;
  seconds: number;
  /** Items processed (written or skipped) by this run per second. */
  imagesPerSecond: number;
  /** Size of pixels.bin. */
  pixelsBytes: number;
  reportPath: string;
}

const DEFAULT_MAX_BAD_FRACTION = 0.01;
const DEFAULT_MIN_SIDE = 32;
const COMMIT_RECORDS = 64;
const COMMIT_MS = 500;
const DONE: Promise<never> = new Promise<never>(() => {});

function argError(msg: string): CxformerError {
  return new CxformerError('CXF_ARG', `prepare: ${msg}`);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

interface Paths {
  info: string;
  pixels: string;
  index: string;
  report: string;
  lock: string;
}

/** What is on disk. */
interface State {
  info: CacheInfo | undefined;
  records: CacheRecord[];
  /** Bytes of index.jsonl, and how many of them hold `records`. */
  indexSize: number;
  validBytes: number;
  pixelsSize: number;
  /** End of the last record (where the next one's padding starts). */
  pixelsEnd: number;
  /** A torn tail to remove (index bytes past the last record, pixels past its end). */
  torn: boolean;
  report: CacheReport | undefined;
}

/** What a run has to do. */
interface Plan {
  /** Positions (in items) of the items to process, increasing. */
  todo: number[];
  cached: number;
  /** Skipped items carried over from the report of a complete cache, with their item positions. */
  carried: { pos: number; s: SkippedItem }[];
  /** (record index, item position) of records whose metadata changed. */
  metaChanged: [number, number][];
  extraRecords: number;
  nothingToDo: boolean;
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

const REBUILD = 'use another output folder, or overwrite: true (--overwrite) to rebuild the cache';

/** Reads the cache state in `out`, tolerating what an interrupted run leaves. */
async function inspect(p: Paths, settings: CacheSettings): Promise<State> {
  const infoText = await readIfExists(p.info);
  if (infoText === undefined) {
    const strays = [];
    for (const f of [p.pixels, p.index]) if (((await sizeOf(f)) ?? 0) > 0) strays.push(path.basename(f));
    if (strays.length > 0) {
      throw new CacheError(`found ${strays.join(' and ')} but no ${FILES.info}: not a cache written by this version of cxformer; ${REBUILD}`, path.dirname(p.info));
    }
    return { info: undefined, records: [], indexSize: 0, validBytes: 0, pixelsSize: 0, pixelsEnd: 0, torn: false, report: undefined };
  }
  let info: CacheInfo;
  try {
    info = parseInfo(infoText.toString('utf8'), p.info);
  } catch (e) {
    throw new CacheError(`${(e as Error).message}; ${REBUILD}`);
  }
  const diff = settingsDiff(info.settings, settings);
  if (diff.length > 0) {
    throw new CacheError(`the cache was prepared with different settings: ${diff.join(', ')}; ${REBUILD}`, p.info);
  }
  const pixelsSize = (await sizeOf(p.pixels)) ?? 0;
  const indexBytes = (await readIfExists(p.index)) ?? Buffer.alloc(0);
  let parsed;
  try {
    parsed = parseIndex(indexBytes, p.index, settings, pixelsSize, true);
  } catch (e) {
    throw new CacheError(`${(e as Error).message}; ${REBUILD}`);
  }
  const last = parsed.records[parsed.records.length - 1];
  const pixelsEnd = last ? last.offset + last.byteLength : 0;
  const reportText = await readIfExists(p.report);
  return {
    info,
    records: parsed.records,
    indexSize: indexBytes.length,
    validBytes: parsed.validBytes,
    pixelsSize,
    pixelsEnd,
    torn: parsed.validBytes !== indexBytes.length || pixelsSize !== pixelsEnd,
    report: reportText === undefined ? undefined : parseReport(reportText.toString('utf8')),
  };
}

function makePlan(st: State, items: readonly PrepareItem[], metaJson: readonly string[], retrySkipped: boolean): Plan {
  const byId = new Map(st.records.map((r) => [r.id, r] as const));
  const complete = st.info?.complete === true;
  const reported = new Map<string, SkippedItem>();
  if (complete && !retrySkipped && st.report) for (const s of st.report.skipped) reported.set(s.id, s);
  const plan: Plan = { todo: [], cached: 0, carried: [], metaChanged: [], extraRecords: 0, nothingToDo: false };
  items.forEach((item, pos) => {
    const rec = byId.get(item.id);
    if (rec) {
      plan.cached++;
      if (JSON.stringify(rec.meta) !== metaJson[pos]) plan.metaChanged.push([rec.i, pos]);
      return;
    }
    const s = reported.get(item.id);
    if (s) plan.carried.push({ pos, s: { ...s, path: item.path } });
    else plan.todo.push(pos);
  });
  plan.extraRecords = st.records.length - plan.cached;
  plan.nothingToDo =
    complete &&
    !st.torn &&
    plan.todo.length === 0 &&
    plan.metaChanged.length === 0 &&
    st.info!.items === items.length &&
    st.info!.records === st.records.length &&
    st.info!.skipped === plan.carried.length &&
    (st.report?.skipped.length ?? 0) === plan.carried.length;
  return plan;
}

/** Takes `prepare.lock` (exclusive create); a lock left by a dead process on this host is replaced. */
async function takeLock(file: string): Promise<() => Promise<void>> {
  const host = hostname();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx');
      try {
        await fh.writeFile(`${JSON.stringify({ pid: process.pid, hostname: host, started: new Date().toISOString() })}\n`);
      } finally {
        await fh.close();
      }
      return async () => {
        await rm(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder: { pid?: unknown; hostname?: unknown; started?: unknown } = {};
    try {
      holder = JSON.parse(await readFile(file, 'utf8')) as typeof holder;
    } catch {
      // unreadable or half-written: treat as held
    }
    let alive = true;
    if (holder.hostname === host && Number.isSafeInteger(holder.pid) && holder.pid !== process.pid) {
      try {
        process.kill(holder.pid as number, 0);
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (alive || attempt > 0) {
      throw new CacheError(
        `another prepare run (pid ${String(holder.pid)} on ${String(holder.hostname)}, started ${String(holder.started)}) is writing this cache; ` +
          'if none is running, delete this lock file',
        file,
      );
    }
    await rm(file, { force: true }); // stale: its process is gone
  }
  throw new CacheError('could not take the lock', file);
}

/** Writes all of `buf` at `position` (positional), looping over partial writes. */
async function writeAllAt(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    off += bytesWritten;
  }
}

/** Appends all of `buf` (the handle is opened in append mode). */
async function appendAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, null);
    off += bytesWritten;
  }
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? Object.assign(new Error('prepare: aborted'), { name: 'AbortError', code: 'ABORT_ERR' });
}

/** Awaits `p`, rejecting early if `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function validate(o: PrepareOptions) {
  if (typeof o.out !== 'string' || o.out.trim() === '') throw argError(`out: expected a folder path, got ${JSON.stringify(o.out)}`);
  if (!Array.isArray(o.items)) throw argError('items: expected an array of { id, path, meta? }');
  if (!(o.shorterSide === null || (Number.isSafeInteger(o.shorterSide) && o.shorterSide >= 1))) {
    throw argError(`shorterSide: expected a positive integer or null, got ${String(o.shorterSide)}`);
  }
  if (o.bitDepth !== 8 && o.bitDepth !== 16) throw argError(`bitDepth: expected 8 or 16, got ${String(o.bitDepth)}`);
  const workers = o.workers ?? availableParallelism();
  if (!(Number.isSafeInteger(workers) && workers >= 1 && workers <= 1024)) throw argError(`workers: expected an integer in 1..1024, got ${String(o.workers)}`);
  const maxBadFraction = o.maxBadFraction ?? DEFAULT_MAX_BAD_FRACTION;
  if (!(typeof maxBadFraction === 'number' && maxBadFraction >= 0 && maxBadFraction <= 1)) {
    throw argError(`maxBadFraction: expected a number in [0, 1], got ${String(o.maxBadFraction)}`);
  }
  const minSide = o.minSide ?? DEFAULT_MIN_SIDE;
  if (!(Number.isSafeInteger(minSide) && minSide >= 1)) throw argError(`minSide: expected a positive integer, got ${String(o.minSide)}`);
  const mode = o.mode ?? 'auto';
  if (mode !== 'auto' && mode !== 'threads' && mode !== 'inline') throw argError(`mode: expected 'auto', 'threads' or 'inline', got ${String(o.mode)}`);
  const seen = new Map<string, number>();
  const metaJson: string[] = [];
  o.items.forEach((it, k) => {
    if (typeof it?.id !== 'string' || it.id === '') throw argError(`items[${k}].id: expected a non-empty string, got ${JSON.stringify(it?.id)}`);
    if (typeof it.path !== 'string' || it.path === '') throw argError(`items[${k}].path: expected a file path, got ${JSON.stringify(it.path)}`);
    const prev = seen.get(it.id);
    if (prev !== undefined) throw argError(`items[${k}].id '${it.id}' is already used by items[${prev}]`);
    seen.set(it.id, k);
    if (it.meta !== undefined && !isPlainObject(it.meta)) throw argError(`items[${k}].meta: expected a plain object, got ${Object.prototype.toString.call(it.meta)}`);
    let json: string;
    try {
      json = JSON.stringify(it.meta ?? {});
    } catch (e) {
      throw argError(`items[${k}].meta: cannot be stored as JSON (${(e as Error).message})`);
    }
    metaJson.push(json);
  });
  return { settings: makeSettings(o.shorterSide, o.bitDepth, minSide), workers, maxBadFraction, mode, metaJson };
}

/** The largest number of unusable items a run may have (⌊fraction · items⌋). */
export function allowedBad(maxBadFraction: number, items: number): number {
  return Math.floor(maxBadFraction * items + 1e-9);
}

function badFractionError(bad: number, total: number, maxBadFraction: number, reportPath: string, processed: number, todo: number): CacheError {
  const pct = total === 0 ? 0 : (100 * bad) / total;
  const stopped = processed < todo ? `; stopped after ${processed} of the ${todo} items to process` : '';
  return new CacheError(
    `prepare: ${bad} of ${total} items (${pct.toFixed(2)} %) could not be used, more than maxBadFraction ${maxBadFraction} allows ` +
      `(${allowedBad(maxBadFraction, total)})${stopped}; the skipped items and why are listed in ${reportPath}`,
  );
}

function makeReport(items: number, records: number, skipped: SkippedItem[], maxBadFraction: number, failed: boolean): CacheReport {
  const byReason = Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<SkipReason, number>;
  for (const s of skipped) byReason[s.reason]++;
  return { format: 'cxformer-prepared-cache-report', version: CACHE_VERSION, items, records, skippedCount: skipped.length, byReason, maxBadFraction, failed, skipped };
}

/**
 * Builds or completes a prepared cache in `o.out` (see format.md).
 *
 * - Fresh folder: creates the cache.
 * - Existing cache with the same settings: resumes (drops a torn tail, skips ids already present, appends the
 *   rest in item order); a complete, up-to-date cache is left untouched (`nothingToDo`). Changed metadata of
 *   cached ids is rewritten in index.jsonl; records of ids not among `items` are kept (`extraRecords`).
 * - Different settings (or an unreadable cache): CacheError naming the differing setting, unless `overwrite`.
 *
 * Unreadable, corrupt, too small or too large images are skipped and listed in report.json; the run fails
 * (CacheError naming the count, the fraction and report.json) as soon as more than ⌊maxBadFraction · items⌋ are.
 *
 * @throws CxformerError (CXF_ARG) for bad options; CacheError (CXF_DATA) as above; the signal's reason on abort
 */
export async function prepareCache(o: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const { settings, workers, maxBadFraction, mode, metaJson } = validate(o);
  const items = o.items;
  const total = items.length;
  const out = path.resolve(o.out);
  const p: Paths = {
    info: path.join(out, FILES.info),
    pixels: path.join(out, FILES.pixels),
    index: path.join(out, FILES.index),
    report: path.join(out, FILES.report),
    lock: path.join(out, FILES.lock),
  };
  const signal = o.signal;
  signal?.throwIfAborted();
  const allowed = allowedBad(maxBadFraction, total);
  const seconds = () => (performance.now() - t0) / 1000;

  const base = (st: State, plan: Plan) => ({
    out,
    settings,
    workers,
    items: total,
    cached: plan.cached,
    extraRecords: plan.extraRecords,
    reportPath: p.report,
    repaired: st.torn,
  });

  await mkdir(out, { recursive: true });
  if (!o.overwrite) {
    const st = await inspect(p, settings);
    const plan = makePlan(st, items, metaJson, o.retrySkipped === true);
    if (plan.nothingToDo) {
      if (plan.carried.length > allowed) throw badFractionError(plan.carried.length, total, maxBadFraction, p.report, 0, 0);
      return {
        ...base(st, plan),
        mode: null,
        records: st.records.length,
        written: 0,
        skipped: plan.carried.map((c) => c.s),
        metaUpdated: 0,
        nothingToDo: true,
        seconds: seconds(),
        imagesPerSecond: 0,
        pixelsBytes: st.pixelsSize,
      };
    }
  }

  const release = await takeLock(p.lock);
  let executor: Executor | undefined;
  let pixelsFh: FileHandle | undefined;
  let indexFh: FileHandle | undefined;
  try {
    // Under the lock, look again (another run may have finished in between) and set the files up.
    let st: State;
    if (o.overwrite) {
      // Empty the data files before replacing cache.json: a kill in between leaves an old cache.json over an
      // empty index, never old records under new settings.
      for (const f of [p.index, p.pixels]) if ((await sizeOf(f)) !== undefined) await truncate(f, 0);
      await rm(p.report, { force: true });
      st = { info: undefined, records: [], indexSize: 0, validBytes: 0, pixelsSize: 0, pixelsEnd: 0, torn: false, report: undefined };
    } else {
      st = await inspect(p, settings);
    }
    const plan = makePlan(st, items, metaJson, o.retrySkipped === true);
    const records = st.records;
    const info: CacheInfo = {
      format: CACHE_FORMAT,
      version: CACHE_VERSION,
      settings,
      alignment: ALIGNMENT,
      byteOrder: 'little',
      records: records.length,
      skipped: 0,
      items: total,
      complete: false,
    };
    // Mark the cache incomplete before touching anything else.
    await writeFileAtomic(p.info, formatInfo(info));
    if (plan.metaChanged.length > 0) {
      for (const [i, pos] of plan.metaChanged) records[i]!.meta = JSON.parse(metaJson[pos]!) as Record<string, unknown>;
      await writeFileAtomic(p.index, records.map(formatRecord).join(''));
    } else if ((await sizeOf(p.index)) === undefined) {
      await writeFileAtomic(p.index, '');
    } else if (st.validBytes !== st.indexSize) {
      await truncate(p.index, st.validBytes);
    }
    if ((await sizeOf(p.pixels)) === undefined) await writeFileAtomic(p.pixels, new Uint8Array(0));
    else if (st.pixelsSize !== st.pixelsEnd) await truncate(p.pixels, st.pixelsEnd);

    pixelsFh = await open(p.pixels, 'r+');
    indexFh = await open(p.index, 'a');
    const pfh = pixelsFh;
    const ifh = indexFh;

    let end = st.pixelsEnd;
    let pending: string[] = [];
    let lastCommit = performance.now();
    const commit = async () => {
      if (pending.length === 0) return;
      await pfh.datasync(); // pixels on disk before the lines that name them
      await appendAll(ifh, Buffer.from(pending.join(''), 'utf8'));
      pending = [];
      lastCommit = performance.now();
    };
    const zeros = new Uint8Array(ALIGNMENT);

    const skipped: { pos: number; s: SkippedItem }[] = [...plan.carried];
    let written = 0;
    let processed = 0;
    const tRun = performance.now();
    const progress = () => {
      if (!o.onProgress) return;
      const el = (performance.now() - tRun) / 1000;
      o.onProgress({
        done: plan.cached + skipped.length + written,
        total,
        written,
        skipped: skipped.length,
        cached: plan.cached,
        imagesPerSecond: el > 0 ? processed / el : 0,
        elapsedSeconds: el,
      });
    };
    const finishReport = async (failed: boolean) => {
      skipped.sort((a, b) => a.pos - b.pos);
      const list = skipped.map((x) => x.s);
      await writeFileAtomic(p.report, `${JSON.stringify(makeReport(total, records.length, list, maxBadFraction, failed), null, 2)}\n`);
      return list;
    };

    const todo = plan.todo;
    if (skipped.length > allowed) {
      await finishReport(true);
      throw badFractionError(skipped.length, total, maxBadFraction, p.report, 0, todo.length);
    }
    progress();
    let failure: CacheError | undefined;
    if (todo.length > 0) {
      executor = createExecutor(mode, Math.min(workers, todo.length), { shorterSide: settings.shorterSide, bitDepth: settings.bitDepth, minSide: settings.minSide });
      const ex = executor;
      const window = ex.mode === 'threads' ? ex.size * 3 : ex.size;
      const launched: Promise<ItemOutcome>[] = new Array(todo.length);
      const launch = (k: number) => {
        const pr = ex.run(items[todo[k]!]!.path);
        pr.catch(() => {}); // awaited below, in order; this only silences early rejections after an abort
        launched[k] = pr;
      };
      for (let k = 0; k < Math.min(window, todo.length); k++) launch(k);
      try {
        for (let k = 0; k < todo.length; k++) {
          const outcome = await raceAbort(launched[k]!, signal);
          launched[k] = DONE; // drop the reference to the pixels
          if (k + window < todo.length) launch(k + window);
          const pos = todo[k]!;
          const item = items[pos]!;
          processed++;
          if (!outcome.ok) {
            skipped.push({ pos, s: { id: item.id, path: item.path, reason: outcome.reason, message: outcome.message } });
            if (skipped.length > allowed) {
              failure = badFractionError(skipped.length, total, maxBadFraction, p.report, processed, todo.length);
              break;
            }
          } else {
            const offset = alignUp(end);
            if (offset > end) await writeAllAt(pfh, zeros.subarray(0, offset - end), end);
            await writeAllAt(pfh, outcome.bytes, offset);
            end = offset + outcome.bytes.length;
            const rec: CacheRecord = {
              i: records.length,
              id: item.id,
              offset,
              byteLength: outcome.bytes.length,
              height: outcome.height,
              width: outcome.width,
              bitDepth: settings.bitDepth,
              originalHeight: outcome.originalHeight,
              originalWidth: outcome.originalWidth,
              sourceBitDepth: outcome.sourceBitDepth,
              sourceChannels: outcome.sourceChannels,
              crc32: outcome.crc32,
              meta: JSON.parse(metaJson[pos]!) as Record<string, unknown>,
            };
            records.push(rec);
            pending.push(formatRecord(rec));
            written++;
            if (pending.length >= COMMIT_RECORDS || performance.now() - lastCommit >= COMMIT_MS) await commit();
          }
          progress();
          signal?.throwIfAborted();
        }
      } finally {
        // Whatever happened, what is written stays usable: index the records whose pixels are out.
        await commit();
        await executor.close();
      }
    }
    const runSeconds = (performance.now() - tRun) / 1000;
    await ifh.datasync();
    await ifh.close();
    indexFh = undefined;
    await pfh.close();
    pixelsFh = undefined;

    if (failure) {
      await finishReport(true);
      await writeFileAtomic(p.info, formatInfo({ ...info, records: records.length, skipped: skipped.length }));
      throw failure;
    }
    const list = await finishReport(false);
    await writeFileAtomic(p.info, formatInfo({ ...info, records: records.length, skipped: list.length, complete: true }));
    return {
      ...base(st, plan),
      mode: executor?.mode ?? null,
      records: records.length,
      written,
      skipped: list,
      metaUpdated: plan.metaChanged.length,
      nothingToDo: false,
      seconds: seconds(),
      imagesPerSecond: runSeconds > 0 ? processed / runSeconds : 0,
      pixelsBytes: end,
    };
  } finally {
    await executor?.close().catch(() => {});
    await indexFh?.close().catch(() => {});
    await pixelsFh?.close().catch(() => {});
    await release();
  }
}
