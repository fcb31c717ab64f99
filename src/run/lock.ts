/**
 * One run per folder: a trainer holds `<run>/.cxformer.lock` while it uses the folder. The lock is taken
 * atomically (the complete record is written to a private file, then hard-linked to the lock name, which fails when
 * the name exists), so a reader never sees a half-written lock and two starts cannot both win.
 *
 * The record names the holder: pid, host, its start time (Linux: the process start tick from /proc/<pid>/stat, so a
 * recycled pid is not mistaken for the holder), the command and when it took the lock. A lock whose holder is dead
 * (same host, no such process, or another process under that pid) is stale: it is recovered and reported. A lock
 * of another host cannot be checked from here: the error names the host and the file to delete once that run is
 * known to be gone.
 */
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { CxformerError } from '../native/load.js';

export const LOCK_FILE = '.cxformer.lock';

export interface LockRecord {
  pid: number;
  host: string;
  /** The holder's start tick (field 22 of /proc/<pid>/stat), null where /proc is missing. */
  procStart: string | null;
  command: string;
  since: string;
}

export interface RunLock {
  file: string;
  /** The stale lock this start recovered, if any (for the log). */
  recovered: LockRecord | null;
  /** Removes the lock if it is still this process's. Idempotent. */
  release(): Promise<void>;
}

/** Synchronous releases of the locks this process holds. */
const held = new Set<() => void>();

/** Releases every lock this process holds, synchronously (before a hard exit). */
export function releaseHeldLocksSync(): void {
  for (const release of [...held]) release();
  held.clear();
}

/** The start tick of a live process, null when there is no such process (or no /proc). */
function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: the fields after it follow the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the holder of `r` is certainly gone (only decidable on its own host). */
export function isStale(r: LockRecord): boolean {
  if (r.host !== hostname()) return false;
  if (!alive(r.pid)) return true;
  const now = procStart(r.pid);
  return r.procStart !== null && now !== null && now !== r.procStart;
}

function parse(text: string, file: string): LockRecord {
  try {
    const r = JSON.parse(text) as LockRecord;
    if (Number.isInteger(r.pid) && typeof r.host === 'string') return r;
  } catch {
    // fall through
  }
  throw new CxformerError('CXF_INPUT', `${file}: not a cxformer lock record (expected JSON with pid and host, found ${JSON.stringify(text.slice(0, 80))}); delete it if no cxformer run uses this folder`);
}

/** The holder of a lock, for messages. */
export const describeLock = (r: LockRecord) => `pid ${r.pid} on ${r.host} (${r.command}, since ${r.since})`;

/**
 * Takes the lock of run folder `dir` (created if missing) for `command`. Throws CXF_LOCKED when a live process
 * (or a process of another host) holds it.
 */
export async function acquireRunLock(dir: string, command: string): Promise<RunLock> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const mine: LockRecord = { pid: process.pid, host: hostname(), procStart: procStart(process.pid), command, since: new Date().toISOString() };
  const text = `${JSON.stringify(mine)}\n`;
  // Temporary names in the atomic writers' pattern: a start killed while holding one leaves a partial file that
  // the next start removes (src/run/folder.ts).
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  let recovered: LockRecord | null = null;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw e;
      }
      let heldText: string;
      try {
        heldText = await readFile(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw e;
      }
      const held = parse(heldText, file);
      if (!isStale(held)) {
        const hint =
          held.host === hostname()
            ? 'wait for it to finish or stop it (Ctrl-C saves its state), or choose another output folder'
            : `if that run is gone, delete ${file}; otherwise choose another output folder`;
        throw new CxformerError('CXF_LOCKED', `${dir} is in use by another cxformer run: ${describeLock(held)}; ${hint}`);
      }
      // Stale: move it aside (atomic; of two recovering processes only one moves it), then check that what was
      // moved is the record judged stale and not a lock another process took in between.
      const aside = `${file}.stale.tmp-${process.pid}`;
      try {
        await rename(file, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const moved = await readFile(aside, 'utf8');
      if (moved !== heldText) {
        await link(aside, file).catch(() => undefined);
        await rm(aside, { force: true });
        throw new CxformerError('CXF_LOCKED', `${dir} was just taken by another cxformer run: ${describeLock(parse(moved, file))}`);
      }
      await rm(aside, { force: true });
      recovered = held;
    }
  } finally {
    await rm(tmp, { force: true });
  }
  let released = false;
  const releaseSync = () => {
    try {
      if (readFileSync(file, 'utf8') === text) unlinkSync(file);
    } catch {
      // gone already
    }
  };
  // A process that ends without releasing (an uncaught error, process.exit, a second Ctrl-C) still frees the folder.
  process.once('exit', releaseSync);
  held.add(releaseSync);
  return {
    file,
    recovered,
    async release() {
      if (released) return;
      released = true;
      process.removeListener('exit', releaseSync);
      held.delete(releaseSync);
      try {
        if ((await readFile(file, 'utf8')) === text) await unlink(file);
      } catch {
        // gone already
      }
    },
  };
}

