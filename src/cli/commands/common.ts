/** Helpers shared by CLI commands (argument → option conversion, progress). */
import type { Backbone } from '../../backbone.js';
import type { DatasetSpec } from '../../datasets/index.js';
import type { ResolvedModel } from '../../model/weights.js';
import type { PreprocessOptions } from '../../image/options.js';
import { CxformerError } from '../../native/load.js';
import { isOverride } from '../parser.js';
import { releaseHeldLocksSync } from '../../run/lock.js';
import { formatDuration } from '../../run/duration.js';

export { formatDuration };

export type Args = Record<string, unknown> & { _: (string | number)[] };

/** Splits positional arguments into inputs and `key=value` overrides. */
export function splitPositionals(list: unknown): { inputs: string[]; overrides: string[] } {
  const all = ((list as unknown[] | undefined) ?? []).map(String);
  return { inputs: all.filter((s) => !isOverride(s)), overrides: all.filter(isOverride) };
}

function sizeArg(name: string, v: unknown): number | [number, number] | null | undefined {
  if (v === undefined) return undefined;
  const s = String(v).trim();
  if (s === 'none') return null;
  const m = /^(\d+)(?:x(\d+))?$/.exec(s);
  if (!m) throw new CxformerError('CXF_ARG', `--${name}: expected a size in px (e.g. 518), HxW (e.g. 518x518) or 'none', got '${s}'`);
  const a = Number(m[1]);
  return m[2] ? [a, Number(m[2])] : a;
}

/** The preprocessing flags the user gave (only those), to layer over the weights' own preprocessing. */
export function preprocessOverrides(a: Args): Partial<PreprocessOptions> {
  const o: Partial<PreprocessOptions> = {};
  if (a.grayscale !== undefined) o.grayscale = Boolean(a.grayscale);
  if (a.equalize !== undefined) o.equalize = Boolean(a.equalize);
  const r = sizeArg('resize', a.resize);
  if (r !== undefined) o.resize = r;
  const c = sizeArg('crop', a.crop);
  if (c !== undefined) o.crop = c;
  return o;
}

/** Where and how {@link progress} writes; tests inject the stream, the terminal flag and the clock. */
export interface ProgressOptions {
  /** No output at all (`-q`). @default false */
  quiet?: boolean;
  /** @default process.stderr */
  stream?: { write(s: string): unknown; isTTY?: boolean };
  /** Rewrite one line in place (`\r`). @default stream.isTTY, or $CXFORMER_PROGRESS_TTY=1 (set by `launch` for its ranks) */
  tty?: boolean;
  /** Milliseconds, monotonic. @default performance.now */
  now?: () => number;
  /** Terminal: at most one rewrite per this many ms. @default 100 */
  ttyIntervalMs?: number;
  /** No terminal: one line per this many ms, and one per 10 % of a counted task. @default 10000 */
  lineIntervalMs?: number;
  /**
   * No terminal: always print a counted task's last item (done = total), as a terminal does (train: the final
   * losses). @default false: a last item within a second of the previous line is left out, the result follows it
   */
  finalLine?: boolean;
}

/**
 * Progress of a long command, to stderr. On a terminal one line is rewritten in place (`\r`), at most ~10 times a
 * second; otherwise a plain line at most every 10 s, plus one per 10 % of a counted task (at most one a second), so
 * logs stay short (`lineIntervalMs`, `finalLine`: train's every 2 s and its last iteration).
 * `update(msg, done, total)` counts: the line reads `msg done/total (pct %), elapsed, ETA`, with
 * ETA = elapsed / done · (total − done) measured from the task's first update (a call with done 0 starts its clock
 * exactly; a new msg, another total or a smaller done starts a new task). `done(msg)` always prints (unless quiet):
 * it ends the live line with a result or a warning.
 */
export function progress(opts: boolean | ProgressOptions = false) {
  const o: ProgressOptions = typeof opts === 'boolean' ? { quiet: opts } : opts;
  const stream = o.stream ?? process.stderr;
  const tty = o.tty ?? (stream.isTTY === true || process.env.CXFORMER_PROGRESS_TTY === '1');
  const now = o.now ?? (() => performance.now());
  const ttyMs = o.ttyIntervalMs ?? 100;
  const lineMs = o.lineIntervalMs ?? 10_000;
  let last = -Infinity; // time of the last line written by update()
  let live = false; // a rewritten line is on screen
  let task: { key: string; total: number; t0: number; done0: number; lastDone: number; bucket: number } | undefined;
  const write = (line: string) => {
    if (tty) {
      stream.write(`\r\x1b[2K${line}`);
      live = true;
    } else stream.write(`${line}\n`);
  };
  return {
    /** `key` names a counted task whose message changes from update to update (default: the message itself). */
    update(msg: string, done?: number, total?: number, key: string = msg) {
      if (o.quiet) return;
      const t = now();
      if (done === undefined || total === undefined) {
        if (t - last < (tty ? ttyMs : lineMs)) return;
        last = t;
        write(msg);
        return;
      }
      if (!task || task.key !== key || task.total !== total || done < task.lastDone) task = { key, total, t0: t, done0: done, lastDone: done, bucket: -1 };
      task.lastDone = done;
      const finished = done >= total;
      const bucket = total > 0 ? Math.floor((10 * done) / total) : 10;
      // Without a terminal: nothing before the first item (the ETA is unknown); then a line per 10 % (at most one a
      // second, so a quick task prints one or two) or every lineMs, and the last item with finalLine.
      const due = tty
        ? t - last >= ttyMs || finished
        : done > task.done0 && (t - last >= lineMs || (bucket > task.bucket && t - last >= 1000) || (finished && o.finalLine === true));
      if (!due) return;
      task.bucket = bucket;
      last = t;
      write(formatCounted(msg, done, total, (t - task.t0) / 1000, done - task.done0));
    },
    done(msg: string) {
      if (o.quiet) return;
      stream.write(tty && live ? `\r\x1b[2K${msg}\n` : `${msg}\n`);
      live = false;
      last = -Infinity;
    },
  };
}

export type Progress = ReturnType<typeof progress>;

/**
 * Shows the progress of the library's feature extraction and bootstrap resampling on `bar` while `fn` runs: code
 * such as evaluateHead reaches them without a callback of its own, so the CLI sets their hooks (src/finetune/
 * features.ts, src/eval/bootstrap.ts) for the duration. Only on rank 0 of a data-parallel run.
 */
export async function withLibraryProgress<T>(bar: Progress, what: string, fn: () => Promise<T>): Promise<T> {
  if ((process.env.RANK ?? '0') !== '0') return fn();
  const [{ setFeatureProgress }, { setBootstrapProgress }] = await Promise.all([import('../../finetune/features.js'), import('../../eval/bootstrap.js')]);
  const features = setFeatureProgress((d, t) => bar.update(`${what}: features`, d, t));
  const bootstrap = setBootstrapProgress((d, t) => bar.update(`${what}: bootstrap`, d, t));
  try {
    return await fn();
  } finally {
    setFeatureProgress(features);
    setBootstrapProgress(bootstrap);
  }
}

/**
 * `synth: images 120/500 (24 %), 16s elapsed, ETA 51s`: `counted` of the `done` were done in the `elapsed`
 * seconds (the others before the clock started), so ETA = elapsed / counted · (total − done); '?' before the first.
 */
export function formatCounted(msg: string, done: number, total: number, elapsed: number, counted = done): string {
  const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
  const eta = counted > 0 ? formatDuration((elapsed / counted) * (total - done)) : '?';
  return `${msg} ${done}/${total} (${pct} %), ${formatDuration(elapsed)} elapsed, ETA ${eta}`;
}

/** A comma-separated option as a list (undefined when absent). */
export const list = (v: unknown): string[] | undefined => (v === undefined ? undefined : String(v).split(',').map((s) => s.trim()).filter(Boolean));

/**
 * The dataset named by `--dataset` / `--root` / `--views` (finetune, evaluate, segmentation). `csv` also takes
 * `--manifest` and the column options, with `labelColumns` as its label columns; `csvHint` says what else a csv run
 * needs when `--manifest` is missing.
 */
export function datasetSpec(a: Args, opts: { split?: string; labelColumns?: string[]; csvHint: string }): DatasetSpec {
  const name = String(a.dataset);
  const common = {
    root: String(a.root),
    ...(a.views !== undefined ? { views: list(a.views) } : {}),
    ...(opts.split ? { split: opts.split } : {}),
  };
  if (name === 'csv') {
    if (a.manifest === undefined) {
      throw new CxformerError('CXF_ARG', `--dataset csv needs --manifest <file.csv> (relative to --root ${a.root}) with ${opts.csvHint}`);
    }
    return {
      name: 'csv',
      ...common,
      manifest: String(a.manifest),
      pathColumn: String(a['path-column']),
      patientColumn: String(a['patient-column']),
      splitColumn: String(a['split-column']),
      ...(opts.labelColumns ? { labelColumns: opts.labelColumns } : {}),
    } as unknown as DatasetSpec;
  }
  return { name, ...common } as unknown as DatasetSpec;
}

/**
 * Ctrl-C for long commands: the first press calls `first` (the command saves its state and stops after the current
 * step); a second press quits at once. "At once" means the default SIGINT action, raised again: `process.exit` would
 * first wait for the native step running on libuv's thread pool (its threads are joined at exit). The run
 * folder's lock is released first; partial files are removed by the next start. Returns the remover of the handler.
 */
export function onInterrupt(first: (signal: AbortSignal) => void): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const handler = () => {
    if (!ac.signal.aborted) {
      ac.abort();
      first(ac.signal);
      return;
    }
    releaseHeldLocksSync();
    process.removeAllListeners('SIGINT');
    process.kill(process.pid, 'SIGINT');
    // Not reached when the default action runs; a guard should SIGINT be ignored by the parent.
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000).unref();
  };
  process.on('SIGINT', handler);
  return { signal: ac.signal, dispose: () => process.removeListener('SIGINT', handler) };
}

/** Builds the backbone of `embed` / `export` from their shared model flags (--device, --threads, --seed, --allow-nonfinite). */
export async function loadBackboneFromArgs(a: Args, resolved: ResolvedModel): Promise<Backbone> {
  const { Backbone } = await import('../../backbone.js');
  return Backbone.load({
    resolved,
    device: String(a.device),
    threads: a.threads as number | undefined,
    seed: Number(a.seed),
    allowNonFinite: Boolean(a['allow-nonfinite']),
  });
}
