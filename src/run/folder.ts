/**
 * The run folder, shared by every trainer (`cxformer train`, `finetune --mode linear|full`, `finetune --task
 * segmentation`). What each guarantees, in one place:
 *   - one run per folder: rank 0 holds `.cxformer.lock` (src/run/lock.ts) from the first look at the folder to the
 *     end, so a second start on a folder in use refuses instead of writing every line twice;
 *   - no leftovers: partial files of writers that were killed (`*.tmp-<pid>…`, the atomic writers' temp names)
 *     are removed at the next start;
 *   - train.log: rank 0 logs there and reports through the trainer's events; every rank's error lands there too;
 *   - settings: a trainer compares the recorded settings only when there is a state to resume, so a start that
 *     failed before its first step never forces `--force` on the corrected command;
 *   - metrics.jsonl holds each step or epoch once: on resume it is cut back to what the resumed state had written
 *     (`keepJsonl`), so lines written after the last state are not repeated.
 */
import { appendFileSync, existsSync } from 'node:fs';
import { appendFile, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../data/fsutil.js';
import { allOrNothing, type ProcessGroup } from '../distributed/group.js';
import { acquireRunLock, describeLock, type RunLock } from './lock.js';

/** Temporary names of the atomic writers: Rust `.<name>.tmp-<pid>`, TS `<name>.tmp-<pid>-<n>`. */
const PARTIAL = /\.tmp-\d+(-[0-9a-z]+)?$/;

/** Removes partial files of killed writers under `dir` (recursively); returns their paths and total bytes. */
export async function removePartialFiles(dir: string): Promise<{ files: string[]; bytes: number }> {
  const files: string[] = [];
  let bytes = 0;
  const walk = async (d: string) => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && PARTIAL.test(e.name)) {
        bytes += (await stat(p).catch(() => ({ size: 0 }))).size;
        await rm(p, { force: true });
        files.push(p);
      }
    }
  };
  await walk(dir);
  return { files, bytes };
}

/**
 * Rewrites a JSON-lines file keeping the records `keep` accepts, in order. A torn last line (a writer killed
 * mid-append) is dropped. A missing file becomes an empty one.
 */
export async function keepJsonl(file: string, keep: (rec: Record<string, unknown>) => boolean): Promise<number> {
  const text = existsSync(file) ? await readFile(file, 'utf8') : '';
  const kept: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (keep(rec)) kept.push(line);
  }
  await writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
  return kept.length;
}

/** What a trainer gets from `withRunFolder`. */
export interface RunFolder {
  dir: string;
  rank: number;
  lead: boolean;
  /** Rank 0 appends to train.log and reports; the other ranks report only what is theirs (`everyRank`). */
  log(message: string, everyRank?: boolean): Promise<void>;
}

export interface RunFolderOptions {
  dir: string;
  rank: number;
  pg: ProcessGroup | null;
  /** The command, recorded in the lock (e.g. 'cxformer train'). */
  command: string;
  /** Where messages go besides train.log (the trainer's event stream). */
  report?: (message: string) => void;
}

const stamp = (message: string) => `${new Date().toISOString()} ${message}\n`;

/**
 * Runs a trainer in its run folder: rank 0 takes the folder's lock and removes partial files of killed writers
 * (every rank learns whether that worked), `body` runs, an error of any rank is appended to train.log before it
 * propagates, and the lock is released however `body` ends.
 */
export async function withRunFolder<T>(o: RunFolderOptions, body: (run: RunFolder) => Promise<T>): Promise<T> {
  const lead = o.rank === 0;
  const logFile = path.join(o.dir, 'train.log');
  const report = o.report ?? (() => undefined);
  const run: RunFolder = {
    dir: o.dir,
    rank: o.rank,
    lead,
    // Synchronous appends keep the lines in call order (callers need not await); a line is a few bytes.
    async log(message, everyRank = false) {
      if (lead) appendFileSync(logFile, stamp(message));
      if (lead || everyRank) report(lead ? message : `rank ${o.rank}: ${message}`);
    },
  };
  let lock: RunLock | null = null;
  try {
    await allOrNothing(o.pg, 'taking the run folder', async () => {
      if (!lead) return;
      lock = await acquireRunLock(o.dir, o.command);
      if (lock.recovered) await run.log(`recovered the lock of a run that is gone: ${describeLock(lock.recovered)}`);
      const partial = await removePartialFiles(o.dir);
      if (partial.files.length) {
        await run.log(`removed ${partial.files.length} partial file(s) of an interrupted writer (${(partial.bytes / 2 ** 20).toFixed(1)} MiB): ${partial.files.map((f) => path.relative(o.dir, f)).join(', ')}`);
      }
    });
    return await body(run);
  } catch (e) {
    // Best effort (the error may be a full disk): the error itself is what the caller sees.
    // A refused start leaves the other run's train.log alone.
    const who = lead ? '' : `rank ${o.rank}: `;
    const locked = (e as { code?: string })?.code === 'CXF_LOCKED';
    if (!locked && existsSync(o.dir)) await appendFile(logFile, stamp(`${who}error: ${(e as Error)?.message ?? String(e)}`)).catch(() => undefined);
    throw e;
  } finally {
    await (lock as RunLock | null)?.release();
  }
}
