/** Helpers shared by CLI commands (argument → option conversion, progress). */
import type { DatasetSpec } from '../../datasets/index.js';
import type { PreprocessOptions } from '../../image/options.js';
import { CxformerError } from '../../native/load.js';
import { isOverride } from '../parser.js';
import { releaseHeldLocksSync } from '../../run/lock.js';

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

/** One-line progress to stderr (overwritten in place on a TTY). */
export function progress(quiet: boolean) {
  const tty = process.stderr.isTTY;
  return {
    update(msg: string) {
      if (quiet) return;
      process.stderr.write(tty ? `\r\x1b[2K${msg}` : `${msg}\n`);
    },
    done(msg: string) {
      if (quiet) return;
      process.stderr.write(tty ? `\r\x1b[2K${msg}\n` : `${msg}\n`);
    },
  };
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

/** An ETA or elapsed time for progress lines: 1h05m, 4m07s, 12s; '?' when unknown. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  return m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
