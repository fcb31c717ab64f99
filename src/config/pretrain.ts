/**
 * Pretraining configuration: configs/pretrain/default.yaml (every key, one comment each) merged with config files
 * and dotted `key=value` overrides, validated per key, with derived values computed once (pretrain-derive.ts),
 * written beside the outputs as resolved.yaml, and compared when resuming. As dinov2 utils/config.py, without
 * OmegaConf: default <- file... <- command line; unknown keys are errors; `???` marks required keys.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { COLLECTION_STYLE_FLOW, dump, visit } from 'js-yaml';

import { writeFileAtomic } from '../data/fsutil.js';
import { ConfigError } from '../model/config.js';
import { derivePretrain, type PretrainDerived } from './pretrain-derive.js';
import { PRETRAIN_SCHEMA, RESUME_SAFE_KEYS, type PretrainConfig } from './pretrain-schema.js';
import {
  absentKeys,
  COMMAND_LINE,
  getAt,
  keyComments,
  leafKeys,
  mergeLayer,
  overridesToLayer,
  parseYamlLayer,
  ruleAt,
  throwIfErrors,
  validateTree,
  type Section,
  type Tree,
} from './tree.js';

export type { Centering, Precision, PretrainConfig, PretrainModelConfig, ScalingRule } from './pretrain-schema.js';
export { PRETRAIN_SCHEMA, RESUME_SAFE_KEYS } from './pretrain-schema.js';
export { COMMAND_LINE, MISSING } from './tree.js';
export { derivePretrain, pretrainVitConfig, referenceMaxMaskPatches, type PretrainDerived } from './pretrain-derive.js';

const SCHEMA = PRETRAIN_SCHEMA as unknown as Section;

/** Folder of the shipped pretraining configs (default.yaml and the presets), inside the package. */
export const PRETRAIN_CONFIG_DIR = fileURLToPath(new URL('../../configs/pretrain/', import.meta.url));
/** The defaults file: every key of a pretraining run. */
export const DEFAULT_PRETRAIN_CONFIG = path.join(PRETRAIN_CONFIG_DIR, 'default.yaml');

/** One YAML document and the name it is reported under (a file path, usually). */
export interface ConfigText {
  source: string;
  text: string;
}

export interface LoadPretrainConfigOptions {
  /** Config files merged in order over the defaults; a bare name (`demo`, `cxformer_small`) means a shipped preset. */
  files?: readonly string[];
  /** Dotted `key=value` overrides applied last (values parsed as YAML: `3e-4`, `null`, `[0.4, 1]`). */
  overrides?: readonly string[];
  /** Defaults file. @default DEFAULT_PRETRAIN_CONFIG */
  defaultsPath?: string;
  /** Data-parallel world size used for derived values. @default 1 */
  world?: number;
  /** Leave required keys unset (`???`, listed in `unset`) instead of failing: for printing a config. @default false */
  allowUnset?: boolean;
}

export interface LoadedPretrainConfig {
  /** Every key, merged and validated. */
  config: PretrainConfig;
  /** Dotted leaf key -> where its value came from (defaults path, config file path or 'command line'). */
  sources: Record<string, string>;
  /** Values computed from `config` (iterations, effective lr, mask limit, batch sizes, VitConfig). */
  derived: PretrainDerived;
  /** Required keys still `???` (only with `allowUnset`; otherwise they are an error). */
  unset: string[];
}

/**
 * Merges and validates config texts without touching the file system: defaults <- files (in order) <- overrides.
 * @throws ConfigError naming each unknown key (with the valid keys at its level), each invalid value (with its
 *   source) and the required keys left unset, all at once
 */
export function resolvePretrainConfig(
  defaults: ConfigText,
  files: readonly ConfigText[] = [],
  overrides: readonly string[] = [],
  world = 1,
  allowUnset = false,
): LoadedPretrainConfig {
  const defaultsTree = parseYamlLayer(defaults.text, defaults.source);
  const absent = absentKeys(SCHEMA, defaultsTree);
  if (absent.length) {
    throw new ConfigError(`Defaults file ${defaults.source} must list every key; it lacks ${absent.join(', ')}`);
  }
  const errors: string[] = [];
  const sources: Record<string, string> = {};
  const tree: Tree = {};
  mergeLayer(SCHEMA, tree, defaultsTree, defaults.source, sources, errors);
  for (const f of files) mergeLayer(SCHEMA, tree, parseYamlLayer(f.text, f.source), f.source, sources, errors);
  const cli = overridesToLayer(SCHEMA, overrides, errors);
  mergeLayer(SCHEMA, tree, cli, COMMAND_LINE, sources, errors);
  const unset: string[] = [];
  validateTree(SCHEMA, tree, sources, errors, allowUnset ? unset : undefined);
  throwIfErrors(errors, 'pretraining config');
  const config = tree as unknown as PretrainConfig;
  return { config, sources, derived: derivePretrain(config, world), unset };
}

/** Names of the shipped presets (configs/pretrain/*.yaml other than default.yaml). */
export function pretrainPresets(dir = PRETRAIN_CONFIG_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'default.yaml')
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/** A config argument as a file path: an existing path, or the name of a shipped preset (`demo`, `cxformer_base`). */
export async function resolvePretrainConfigFile(nameOrPath: string, dir = PRETRAIN_CONFIG_DIR): Promise<string> {
  try {
    await access(nameOrPath);
    return nameOrPath;
  } catch {
    /* not a path: try a preset name */
  }
  const name = nameOrPath.replace(/\.ya?ml$/, '');
  if (/^[\w-]+$/.test(name) && name !== 'default') {
    const file = path.join(dir, `${name}.yaml`);
    try {
      await access(file);
      return file;
    } catch {
      /* fall through */
    }
  }
  throw new ConfigError(`Config file '${nameOrPath}' not found; give a YAML path or a preset name: ${pretrainPresets(dir).join(', ')}`);
}

/**
 * Loads the defaults, each of `files` and the overrides, and validates the result (see resolvePretrainConfig).
 * @example
 *   const { config, derived } = await loadPretrainConfig({ files: ['demo'], overrides: ['output=runs/demo'] });
 */
export async function loadPretrainConfig(opts: LoadPretrainConfigOptions = {}): Promise<LoadedPretrainConfig> {
  const defaultsPath = opts.defaultsPath ?? DEFAULT_PRETRAIN_CONFIG;
  const read = async (file: string): Promise<ConfigText> => {
    try {
      return { source: file, text: await readFile(file, 'utf8') };
    } catch (e) {
      throw new ConfigError(`Cannot read config file ${file}: ${(e as Error).message}`);
    }
  };
  const defaults = await read(defaultsPath);
  const dir = path.dirname(defaultsPath);
  const files: ConfigText[] = [];
  for (const f of opts.files ?? []) files.push(await read(await resolvePretrainConfigFile(f, dir)));
  return resolvePretrainConfig(defaults, files, opts.overrides ?? [], opts.world ?? 1, opts.allowUnset ?? false);
}

/** YAML text of a config: key order of default.yaml, short lists in flow style (`[0.32, 1]`). */
export function pretrainConfigToYaml(config: PretrainConfig): string {
  return dump(config, {
    transform: (docs) =>
      visit(docs, (node) => {
        if ('kind' in node && node.kind === 'sequence') node.style = COLLECTION_STYLE_FLOW;
      }),
  });
}

/**
 * Writes `<dir>/resolved.yaml` (every key; loadable as a config file) atomically: a temporary file in `dir`,
 * then rename. The header comment records the time and, if given, the derived values.
 * @returns the path written
 */
export async function writeResolvedConfig(dir: string, config: PretrainConfig, derived?: PretrainDerived): Promise<string> {
  await mkdir(dir, { recursive: true });
  const header = [
    '# cxformer pretraining config, fully resolved (defaults <- config files <- command line).',
    `# Written ${new Date().toISOString()}. Load it back as a config file to rerun or resume with the same settings.`,
  ];
  if (derived) {
    const { vit: _vit, lr_messages, ...scalars } = derived;
    header.push(`# Derived: ${Object.entries(scalars).map(([k, v]) => `${k}=${v}`).join(', ')}`);
    for (const m of lr_messages) header.push(`# ${m}`);
  }
  const file = path.join(dir, 'resolved.yaml');
  await writeFileAtomic(file, `${header.join('\n')}\n${pretrainConfigToYaml(config)}`);
  return file;
}

/** Every dotted leaf key of the pretraining config, in default.yaml order. */
export function pretrainConfigKeys(): string[] {
  return leafKeys(SCHEMA);
}

const resumeSafe = (key: string) => RESUME_SAFE_KEYS.some((s) => key === s || key.startsWith(`${s}.`));

/**
 * Keys whose values differ between two configs in a way that makes resuming `a`'s output folder with `b` unsafe
 * (anything that changes what is learnt: data, model, losses, schedules, seed, precision). Keys in
 * RESUME_SAFE_KEYS (output, log.*, checkpoint.*, compute.device/threads, data loading speed) are ignored.
 * @returns the differing dotted keys; empty when resuming is safe
 */
export function sameRunConfig(a: PretrainConfig, b: PretrainConfig): string[] {
  return pretrainConfigKeys().filter((k) => !resumeSafe(k) && JSON.stringify(getAt(a, k)) !== JSON.stringify(getAt(b, k)));
}

export interface PretrainCliKey {
  /** Dotted key, usable as `key=value`. */
  key: string;
  /** Default from the defaults file (`???` = required). */
  default: unknown;
  /** What the key accepts, e.g. "an integer >= 1". */
  expect: string;
  /** The key's one-line comment in the defaults file. */
  help: string;
}

/** Every key with its default, accepted values and comment, for CLI help. Reads the defaults file synchronously. */
export function configCliKeys(defaultsPath = DEFAULT_PRETRAIN_CONFIG): PretrainCliKey[] {
  const text = readFileSync(defaultsPath, 'utf8');
  const tree = parseYamlLayer(text, defaultsPath);
  const comments = keyComments(text);
  return pretrainConfigKeys().map((key) => ({
    key,
    default: getAt(tree, key),
    expect: ruleAt(SCHEMA, key)!.expect,
    help: comments.get(key) ?? '',
  }));
}
