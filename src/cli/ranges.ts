/**
 * The allowed range of every numeric flag of every command, in one table, checked while parsing (parser.ts), so
 * that `--lr abc`, `--epochs -1` or `--batch-size 0` fail at once with the flag, the value and the range: before
 * any file is read or LibTorch loaded, and exit 2. Library functions and the native configs still check their own
 * inputs; this table is the CLI's promise that nothing out of range reaches them.
 *
 * Every option declared with `type: 'number'` must have a rule here: {@link checkNumericFlags} refuses to parse a
 * command that declares one without (test/cli/hardening-flags.test.ts parses every command).
 */
import type { CommandName } from './parser.js';

/** A closed or half-open interval of numbers or integers; a missing bound is unbounded. */
export interface Range {
  int?: boolean;
  min?: number;
  max?: number;
  /** The bound itself is not allowed, e.g. drop-path < 1. */
  minOpen?: boolean;
  maxOpen?: boolean;
}

const int = (min?: number, max?: number): Range => ({ int: true, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) });
const num = (min?: number, max?: number, open: { minOpen?: boolean; maxOpen?: boolean } = {}): Range => ({
  ...(min !== undefined ? { min } : {}),
  ...(max !== undefined ? { max } : {}),
  ...open,
});

/**
 * Flag → range. A key `'<command> <flag>'` overrides `'<flag>'` for that command where one flag name means
 * different things (synth and phantom sizes).
 */
export const NUMERIC_FLAGS: Readonly<Record<string, Range>> = Object.freeze({
  // Model and runtime (embed, finetune, evaluate, export, info).
  threads: int(1),
  seed: int(),
  // Data and evaluation (finetune, evaluate, embed).
  'batch-size': int(1),
  bootstrap: int(0),
  'bootstrap-seed': int(0),
  // Report generation (finetune --task report, generate).
  'memory-block': int(),
  'memory-pool': int(1),
  dropout: num(0, 1, { maxOpen: true }),
  'max-train': int(1),
  'val-every': int(1),
  beam: int(1),
  'max-new-tokens': int(1),
  temperature: num(0, undefined, { minOpen: true }),
  'top-p': num(0, 1, { minOpen: true }),
  'top-k': int(0),
  // The LLaVA recipe (finetune --task report --decoder llm).
  'lora-rank': int(0),
  'lora-alpha': num(0, undefined, { minOpen: true }),
  'lora-dropout': num(0, 1, { maxOpen: true }),
  'lm-lr': num(0),
  'micro-batches': int(1),
  'feature-layer': int(),
  'max-report-tokens': int(2),
  // Classification training (finetune).
  'cls-layers': int(1),
  epochs: int(1),
  lr: num(0),
  'head-batch-size': int(1),
  patience: int(0),
  'backbone-lr': num(0),
  'layer-decay': num(0, 1, { minOpen: true }),
  'patch-embed-lr-mult': num(0),
  'weight-decay': num(0),
  'warmup-epochs': int(0),
  'clip-grad': num(0),
  'drop-path': num(0, 1, { maxOpen: true }),
  'train-seed': int(),
  'checkpoint-steps': int(0),
  // Segmentation (finetune / evaluate --task segmentation).
  'min-dice-rca': num(0, 1),
  'seg-hidden': int(1),
  'seg-backbone-lr': num(0),
  'seg-weight-decay': num(0),
  'seg-warmup-epochs': int(0),
  'seg-hflip': num(0, 1),
  'seg-max-train': int(1),
  overlays: int(0),
  'eval-batch-size': int(1),
  // launch (its cross-flag rules, e.g. --node-rank < --nnodes, stay in its own check).
  'nproc-per-node': int(1),
  nnodes: int(1),
  'node-rank': int(0),
  'master-port': int(1, 65535),
  'grace-s': num(0),
  // prepare.
  workers: int(1),
  'min-side': int(1),
  'max-bad-fraction': num(0, 1),
  // synth and phantom.
  n: int(1),
  count: int(1),
  'synth size': int(32, 4096),
  'phantom size': int(14),
});

/** The rule of `--flag` under `command`, if any. */
export function rangeOf(command: string, flag: string): Range | undefined {
  return NUMERIC_FLAGS[`${command} ${flag}`] ?? NUMERIC_FLAGS[flag];
}

/** "an integer >= 1", "a number in [0, 1)", "an integer in 1..65535", … */
export function describeRange(r: Range): string {
  const kind = r.int ? 'an integer' : 'a number';
  const { min, max } = r;
  if (min !== undefined && max !== undefined) {
    return r.int ? `${kind} in ${min}..${max}` : `${kind} in ${r.minOpen ? '(' : '['}${min}, ${max}${r.maxOpen ? ')' : ']'}`;
  }
  if (min !== undefined) return `${kind} ${r.minOpen ? '>' : '>='} ${min}`;
  if (max !== undefined) return `${kind} ${r.maxOpen ? '<' : '<='} ${max}`;
  return kind;
}

export function inRange(v: number, r: Range): boolean {
  if (!Number.isFinite(v) || (r.int && !Number.isSafeInteger(v))) return false;
  if (r.min !== undefined && (r.minOpen ? v <= r.min : v < r.min)) return false;
  if (r.max !== undefined && (r.maxOpen ? v >= r.max : v > r.max)) return false;
  return true;
}

/**
 * What the user typed for `--flag` (or one of its aliases) on the command line: yargs has already turned 'abc'
 * into NaN. Undefined when the flag is not on the command line (e.g. it came from --config).
 */
function typed(args: readonly string[], names: readonly string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const s = args[i]!;
    if (s === '--') break;
    for (const n of names) {
      const flag = n.length === 1 ? `-${n}` : `--${n}`;
      if (s === flag) found = args[i + 1] !== undefined && !/^--?[A-Za-z]/.test(args[i + 1]!) ? args[i + 1] : '';
      else if (s.startsWith(`${flag}=`)) found = s.slice(flag.length + 1);
    }
  }
  return found;
}

/**
 * Checks every numeric option of the parsed command against {@link NUMERIC_FLAGS}.
 *
 * @param numberKeys the keys yargs declared `type: 'number'` for this command (aliases included)
 * @param aliases yargs' alias table (key → other names)
 * @param fromConfig the value a --config file gave `flag`, as written (yargs has made it NaN), when there is one
 * @throws Error `<command>: --<flag> must be <range>, got <value>` (the first bad flag), or when a numeric
 *   option has no rule in the table
 */
export function checkNumericFlags(
  argv: Record<string, unknown> & { _: (string | number)[] },
  numberKeys: readonly string[],
  aliases: Readonly<Record<string, readonly string[]>>,
  args: readonly string[],
  fromConfig: (flag: string) => { value: unknown; file: string } | undefined = () => undefined,
): void {
  const command = String(argv._[0] ?? '') as CommandName;
  const aliasNames = new Set(Object.values(aliases).flat());
  for (const flag of numberKeys) {
    if (aliasNames.has(flag)) continue; // another name (-b, -n) of a flag, checked under the flag's name
    const rule = rangeOf(command, flag);
    if (rule === undefined) throw new Error(`${command}: --${flag} is a numeric option without a range in src/cli/ranges.ts`);
    const names = [flag, ...(aliases[flag] ?? [])];
    const v = argv[flag];
    const raw = typed(args, names);
    if (v === undefined) {
      if (raw !== undefined) throw new Error(`${command}: --${flag} must be ${describeRange(rule)}, got no value`);
      continue;
    }
    if (Array.isArray(v)) throw new Error(`${command}: --${flag} must be given once (${describeRange(rule)}), got ${v.length} values: ${v.join(', ')}`);
    if (typeof v === 'number' && inRange(v, rule)) continue;
    const config = raw === undefined ? fromConfig(flag) : undefined;
    const shown =
      typeof v === 'number' && !Number.isNaN(v)
        ? String(v)
        : raw !== undefined
          ? `'${raw}'`
          : config !== undefined
            ? `${JSON.stringify(config.value)} (from --config ${config.file})`
            : 'a value that is not a number';
    throw new Error(`${command}: --${flag} must be ${describeRange(rule)}, got ${shown}`);
  }
}
