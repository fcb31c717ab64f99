/**
 * Where `prepare` runs the per-image work: a pool of worker threads, or in-process.
 *
 * The worker entry is `worker.js` next to this module, found with `new URL('./worker.js', import.meta.url)`.
 * Compiled (dist/cache/pool.js) it exists and `mode: 'auto'` uses threads. Run from the TypeScript sources
 * (vitest, or any loader that compiles on the fly) there is only worker.ts, which a plain Node worker cannot
 * load, so 'auto' falls back to in-process execution: the same {@link processFile} with `size` items in flight
 * on the calling thread (decoding still runs in libvips/libuv threads; the gray conversion, resize and CRC run
 * on the calling thread). 'threads' insists on the worker file and fails without it.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { type ConvertSettings, processFile, type ItemOutcome } from './convert.js';
import type { WorkerReply, WorkerTask } from './worker.js';

export type ExecutionMode = 'auto' | 'threads' | 'inline';

/** Runs items; `run` may be called many times concurrently. */
export interface Executor {
  readonly mode: 'threads' | 'inline';
  /** Worker threads, or items in flight in-process. */
  readonly size: number;
  run(path: string): Promise<ItemOutcome>;
  /** Stops the workers (pending runs are rejected). */
  close(): Promise<void>;
}

/** The compiled worker entry next to this module. */
export function workerEntry(): URL {
  return new URL('./worker.js', import.meta.url);
}

/** Whether the compiled worker entry exists (false when running from the TypeScript sources). */
export function threadsAvailable(): boolean {
  const url = workerEntry();
  return url.protocol === 'file:' && existsSync(fileURLToPath(url));
}

/** Items handed to one worker at a time: one being converted while the next one decodes. */
const PER_WORKER = 2;

interface Pending {
  resolve: (o: ItemOutcome) => void;
  reject: (e: Error) => void;
}

class ThreadPool implements Executor {
  readonly mode = 'threads' as const;
  private readonly workers: { worker: Worker; inflight: Map<number, Pending> }[] = [];
  private readonly queue: { seq: number; path: string; p: Pending }[] = [];
  private seq = 0;
  private failure: Error | undefined;
  private closing = false;

  constructor(readonly size: number, private readonly settings: ConvertSettings) {
    for (let k = 0; k < size; k++) {
      const worker = new Worker(workerEntry());
      const slot = { worker, inflight: new Map<number, Pending>() };
      worker.on('message', (m: WorkerReply) => {
        const p = slot.inflight.get(m.seq);
        if (!p) return;
        slot.inflight.delete(m.seq);
        if ('fatal' in m) p.reject(new Error(`prepare worker failed: ${m.fatal}`));
        else p.resolve(m.outcome);
        this.pump();
      });
      worker.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(new Error(`prepare worker exited unexpectedly (code ${code})`));
      });
      this.workers.push(slot);
    }
  }

  run(path: string): Promise<ItemOutcome> {
    return new Promise<ItemOutcome>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      if (this.closing) return reject(new Error('prepare worker pool is closed'));
      this.queue.push({ seq: this.seq++, path, p: { resolve, reject } });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let best: (typeof this.workers)[number] | undefined;
      for (const w of this.workers) if (w.inflight.size < PER_WORKER && (!best || w.inflight.size < best.inflight.size)) best = w;
      if (!best) return;
      const job = this.queue.shift()!;
      best.inflight.set(job.seq, job.p);
      best.worker.postMessage({ seq: job.seq, path: job.path, settings: this.settings } satisfies WorkerTask);
    }
  }

  private fail(e: Error): void {
    if (this.closing) return;
    this.failure ??= e;
    for (const w of this.workers) {
      for (const p of w.inflight.values()) p.reject(this.failure);
      w.inflight.clear();
    }
    for (const j of this.queue.splice(0)) j.p.reject(this.failure);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const err = new Error('prepare worker pool closed');
    for (const w of this.workers) {
      for (const p of w.inflight.values()) p.reject(err);
      w.inflight.clear();
    }
    for (const j of this.queue.splice(0)) j.p.reject(err);
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

class InlineExecutor implements Executor {
  readonly mode = 'inline' as const;
  constructor(readonly size: number, private readonly settings: ConvertSettings) {}
  run(path: string): Promise<ItemOutcome> {
    return processFile(path, this.settings);
  }
  async close(): Promise<void> {}
}

/**
 * Creates the executor for a run.
 * @throws Error for mode 'threads' when the compiled worker entry is missing
 */
export function createExecutor(mode: ExecutionMode, size: number, settings: ConvertSettings): Executor {
  const threads = mode === 'threads' || (mode === 'auto' && threadsAvailable());
  if (threads && !threadsAvailable()) {
    throw new Error(`prepare: mode 'threads' needs the compiled worker ${fileURLToPath(workerEntry())}, which does not exist (run from dist/, or use mode 'auto' or 'inline')`);
  }
  return threads ? new ThreadPool(size, settings) : new InlineExecutor(size, settings);
}
