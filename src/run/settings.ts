/**
 * The settings a run folder was started with, compared on resume: a resume with other training-relevant values is
 * another run, refused unless `--force`. Values that do not change the result (an evaluation batch, a checkpoint
 * period) are `free`. Only a resumable state binds the folder (src/run/folder.ts).
 */
import { ConfigError } from '../model/config.js';

export interface SettingsDiffOptions {
  /** Top-level keys whose own keys are compared one by one and named `key.sub`. */
  nested?: readonly string[];
  /** Dotted names that may differ. */
  free?: readonly string[];
  /** Values a recorded settings file lacks because it predates a key (e.g. `train.augment` = 'spec'). */
  recordedDefaults?: Record<string, unknown>;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The dotted names of the settings that differ between the recorded `prev` and the new `next`. */
export function settingsDiff(prev: Record<string, unknown>, next: Record<string, unknown>, o: SettingsDiffOptions = {}): string[] {
  const free = new Set(o.free ?? []);
  const nested = new Set(o.nested ?? []);
  const keys = (a: object, b: object) => [...new Set([...Object.keys(a), ...Object.keys(b)])];
  const recorded = (name: string, v: unknown) => (v === undefined ? o.recordedDefaults?.[name] : v);
  const names: string[] = [];
  for (const k of keys(prev, next)) {
    if (nested.has(k)) {
      const a = (prev[k] ?? {}) as Record<string, unknown>;
      const b = (next[k] ?? {}) as Record<string, unknown>;
      for (const s of keys(a, b)) {
        const name = `${k}.${s}`;
        if (!free.has(name) && !same(recorded(name, a[s]), b[s])) names.push(name);
      }
    } else if (!free.has(k) && !same(recorded(k, prev[k]), next[k])) {
      names.push(k);
    }
  }
  return names;
}

/** Throws the error that names the differing settings, unless there are none or `force` is set. */
export function refuseChangedSettings(names: readonly string[], o: { dir: string; file: string; what: string; force: boolean }): void {
  if (!names.length || o.force) return;
  throw new ConfigError(
    `${o.dir} holds a ${o.what} with other settings (${names.join(', ')} differ from its ${o.file}). ` +
      'Choose another output folder, or pass --force to resume it with the new values.',
  );
}
