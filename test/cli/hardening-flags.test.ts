/**
 * Hardening (#13), the command line: every numeric flag of every command checked against one table of ranges
 * (src/cli/ranges.ts) before any work, negative lists after a space (`--layers -4,-1`), `train --print-config`
 * without output= / init.weights=, and a closed stdout (`| head`) ending quietly. Bad input: a one-line message
 * naming the flag, the value and the range, exit 2, no stack, LibTorch not loaded.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCli } from '../../src/cli/parser.js';
import { checkNumericFlags, describeRange, inRange, NUMERIC_FLAGS, rangeOf } from '../../src/cli/ranges.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/\n\[probe\] libtorch_loaded=\w+\n$/, ''), libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

/** Enough of each command for its own checks to pass, so that only the flag under test is wrong. */
const BASE: Record<string, string[]> = {
  finetune: ['finetune', '--root', 'r', '--weights', 'w', '--out', 'o', '--classes', 'A'],
  segment: ['finetune', '--task', 'segmentation', '--root', 'r', '--weights', 'w', '--out', 'o'],
  evaluate: ['evaluate', '--root', 'r', '--weights', 'w', '--head', 'h', '--out', 'o'],
  embed: ['embed', '--weights', 'w', 'a.png', '--out', 'o.safetensors'],
  prepare: ['prepare', '--root', 'r', '--out', 'o'],
  synth: ['synth', '--out', 'o'],
  phantom: ['phantom', '--out', 'o'],
  launch: ['launch', '--nproc-per-node', '2'],
  info: ['info', '--arch', 'vit_small'],
  export: ['export', '--arch', 'vit_small', '--out', 'o'],
  train: ['train', '--config', 'demo', 'output=o'],
};
const withBase = (cmd: string, extra: string[]): string[] => (cmd === 'launch' ? [...BASE.launch!, ...extra, '--', 'train'] : [...BASE[cmd]!, ...extra]);

describe('numeric flags: one table of ranges', () => {
  it('every command parses, so every numeric option it declares has a range', () => {
    // checkNumericFlags refuses a numeric option without a rule; parsing each command once covers them all.
    for (const cmd of Object.keys(BASE)) expect(() => parseCli(withBase(cmd, [])), cmd).not.toThrow();
    // …which it would not if one had no rule.
    expect(() => checkNumericFlags({ _: ['finetune'], 'new-flag': 1 }, ['new-flag'], {}, [])).toThrow('finetune: --new-flag is a numeric option without a range in src/cli/ranges.ts');
  });

  it('describes and applies ranges', () => {
    expect(describeRange(rangeOf('finetune', 'lr')!)).toBe('a number >= 0');
    expect(describeRange(rangeOf('finetune', 'epochs')!)).toBe('an integer >= 1');
    expect(describeRange(rangeOf('finetune', 'drop-path')!)).toBe('a number in [0, 1)');
    expect(describeRange(rangeOf('finetune', 'layer-decay')!)).toBe('a number in (0, 1]');
    expect(describeRange(rangeOf('launch', 'master-port')!)).toBe('an integer in 1..65535');
    expect(describeRange(rangeOf('synth', 'size')!)).toBe('an integer in 32..4096');
    expect(describeRange(rangeOf('phantom', 'size')!)).toBe('an integer >= 14');
    expect(rangeOf('prepare', 'size')).toBeUndefined(); // prepare --size is a string (518, or 'none')
    expect([inRange(NaN, NUMERIC_FLAGS.lr!), inRange(Infinity, NUMERIC_FLAGS.lr!), inRange(0, NUMERIC_FLAGS.lr!)]).toEqual([false, false, true]);
    expect([inRange(1.5, NUMERIC_FLAGS.epochs!), inRange(1, NUMERIC_FLAGS.epochs!)]).toEqual([false, true]);
  });

  it.each([
    // the reported cases
    ['finetune', ['--lr', 'abc'], "finetune: --lr must be a number >= 0, got 'abc'"],
    ['finetune', ['--epochs', '-1'], 'finetune: --epochs must be an integer >= 1, got -1'],
    ['finetune', ['--batch-size', '0'], 'finetune: --batch-size must be an integer >= 1, got 0'],
    ['finetune', ['--bootstrap', '-5'], 'finetune: --bootstrap must be an integer >= 0, got -5'],
    // more of finetune (linear and full)
    ['finetune', ['--epochs', '2.5'], 'finetune: --epochs must be an integer >= 1, got 2.5'],
    ['finetune', ['--lr'], 'finetune: --lr must be a number >= 0, got no value'],
    ['finetune', ['--lr=1e-3', '--lr', 'x'], "finetune: --lr must be a number >= 0, got 'x'"],
    ['finetune', ['-b', 'x'], "finetune: --batch-size must be an integer >= 1, got 'x'"],
    ['finetune', ['--head-batch-size', '0'], 'finetune: --head-batch-size must be an integer >= 1, got 0'],
    ['finetune', ['--cls-layers', '0'], 'finetune: --cls-layers must be an integer >= 1, got 0'],
    ['finetune', ['--patience', '-1'], 'finetune: --patience must be an integer >= 0, got -1'],
    ['finetune', ['--weight-decay', '-0.1'], 'finetune: --weight-decay must be a number >= 0, got -0.1'],
    ['finetune', ['--layer-decay', '0'], 'finetune: --layer-decay must be a number in (0, 1], got 0'],
    ['finetune', ['--drop-path', '1'], 'finetune: --drop-path must be a number in [0, 1), got 1'],
    ['finetune', ['--clip-grad', 'Infinity'], 'finetune: --clip-grad must be a number >= 0, got Infinity'],
    ['finetune', ['--warmup-epochs', '0.5'], 'finetune: --warmup-epochs must be an integer >= 0, got 0.5'],
    ['finetune', ['--train-seed', '1.5'], 'finetune: --train-seed must be an integer, got 1.5'],
    ['finetune', ['--threads', '0'], 'finetune: --threads must be an integer >= 1, got 0'],
    // segmentation (finetune / evaluate --task segmentation)
    ['segment', ['--seg-hflip', '2'], 'finetune: --seg-hflip must be a number in [0, 1], got 2'],
    ['segment', ['--min-dice-rca', '-0.5'], 'finetune: --min-dice-rca must be a number in [0, 1], got -0.5'],
    ['segment', ['--seg-hidden', '0'], 'finetune: --seg-hidden must be an integer >= 1, got 0'],
    ['segment', ['--eval-batch-size', 'many'], "finetune: --eval-batch-size must be an integer >= 1, got 'many'"],
    ['segment', ['--overlays', '-1'], 'finetune: --overlays must be an integer >= 0, got -1'],
    // evaluate
    ['evaluate', ['--bootstrap', 'lots'], "evaluate: --bootstrap must be an integer >= 0, got 'lots'"],
    // (evaluate has no --batch-size: the head file records the feature batch; #14 dropped the unread flag)
    ['evaluate', ['--eval-batch-size', '-2'], 'evaluate: --eval-batch-size must be an integer >= 1, got -2'],
    // embed, info, export (the model options)
    ['embed', ['--threads', '1.5'], 'embed: --threads must be an integer >= 1, got 1.5'],
    ['embed', ['--seed', 'abc'], "embed: --seed must be an integer, got 'abc'"],
    ['info', ['--threads', '-1'], 'info: --threads must be an integer >= 1, got -1'],
    ['export', ['--seed', '0.5'], 'export: --seed must be an integer, got 0.5'],
    // prepare, synth, phantom, launch
    ['prepare', ['--workers', '0'], 'prepare: --workers must be an integer >= 1, got 0'],
    ['prepare', ['--max-bad-fraction', '1.5'], 'prepare: --max-bad-fraction must be a number in [0, 1], got 1.5'],
    ['prepare', ['--min-side', 'big'], "prepare: --min-side must be an integer >= 1, got 'big'"],
    ['synth', ['--size', '8'], 'synth: --size must be an integer in 32..4096, got 8'],
    ['synth', ['--n', '0'], 'synth: --n must be an integer >= 1, got 0'],
    ['phantom', ['-n', '0'], 'phantom: --count must be an integer >= 1, got 0'],
    ['phantom', ['--size', '8'], 'phantom: --size must be an integer >= 14, got 8'],
    ['launch', ['--master-port', '70000'], 'launch: --master-port must be an integer in 1..65535, got 70000'],
    ['launch', ['--grace-s', '-1'], 'launch: --grace-s must be a number >= 0, got -1'],
  ] as const)('%s %j is refused while parsing', (cmd, extra, message) => {
    expect(() => parseCli(withBase(cmd, [...extra]))).toThrow(message);
  });

  it('accepts values in range, including negative seeds and exponents', () => {
    const a = parseCli(withBase('finetune', ['--lr', '1e-3', '--epochs', '3', '-b', '4', '--bootstrap', '0', '--drop-path', '0.1', '--layer-decay', '1', '--train-seed', '-3']));
    expect([a.lr, a.epochs, a['batch-size'], a.bootstrap, a['drop-path'], a['layer-decay'], a['train-seed']]).toEqual([0.001, 3, 4, 0, 0.1, 1, -3]);
    expect(parseCli(withBase('synth', ['--seed', '-7'])).seed).toBe(-7);
    // given twice: the last one wins, under every name
    const twice = parseCli(withBase('finetune', ['--backbone-lr', '1e-4', '--backbone-lr', '2e-4', '-b', '2', '--batch-size', '3']));
    expect([twice['backbone-lr'], twice.backboneLr, twice['batch-size'], twice.b]).toEqual([2e-4, 2e-4, 3, 3]);
  });

  it('values from --config are checked too, and named with the file', () => {
    expect(() => parseCli(['finetune', '--config', 'chexpert', '--root', 'r', '--weights', 'w', '--out', 'o', '--epochs', '0'])).toThrow('finetune: --epochs must be an integer >= 1, got 0');
    const dir = mkdtempSync(path.join(tmpdir(), 'cxf-flags-'));
    try {
      const file = path.join(dir, 'bad.yaml');
      writeFileSync(file, 'classes: A\nlr: abc\n');
      expect(() => parseCli(['finetune', '--config', file, '--root', 'r', '--weights', 'w', '--out', 'o'])).toThrow(`finetune: --lr must be a number >= 0, got "abc" (from --config ${file})`);
      writeFileSync(file, 'classes: A\nbootstrap: -5\n');
      expect(() => parseCli(['finetune', '--config', file, '--root', 'r', '--weights', 'w', '--out', 'o'])).toThrow('finetune: --bootstrap must be an integer >= 0, got -5');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['finetune', '--root', 'r', '--weights', 'w', '--out', 'o', '--classes', 'A', '--lr', 'abc'], "finetune: --lr must be a number >= 0, got 'abc'"],
    [['finetune', '--root', 'r', '--weights', 'w', '--out', 'o', '--classes', 'A', '--epochs', '-1'], 'finetune: --epochs must be an integer >= 1, got -1'],
    [['finetune', '--root', 'r', '--weights', 'w', '--out', 'o', '--classes', 'A', '--batch-size', '0'], 'finetune: --batch-size must be an integer >= 1, got 0'],
    [['finetune', '--root', 'r', '--weights', 'w', '--out', 'o', '--classes', 'A', '--bootstrap', '-5'], 'finetune: --bootstrap must be an integer >= 0, got -5'],
    [['evaluate', '--root', 'r', '--weights', 'w', '--head', 'h', '--out', 'o', '--bootstrap', '-1'], 'evaluate: --bootstrap must be an integer >= 0, got -1'],
    [['embed', '--weights', 'w', 'a.png', '--out', 'o.safetensors', '--threads', '0'], 'embed: --threads must be an integer >= 1, got 0'],
    [['prepare', '--root', 'r', '--out', 'o', '--workers', 'two'], "prepare: --workers must be an integer >= 1, got 'two'"],
    [['finetune', '--task', 'segmentation', '--root', 'r', '--weights', 'w', '--out', 'o', '--seg-hflip', '1.5'], 'finetune: --seg-hflip must be a number in [0, 1], got 1.5'],
  ])('end to end: %j exits 2 before any work', (args, message) => {
    const r = cli(args);
    expect(r.stderr).toContain(`error: ${message}\n`);
    expect(r.stderr).not.toMatch(/\n\s+at |invalid type|Expected a non-empty list/);
    expect(r.code).toBe(2);
    expect(r.libtorch).toBe(false);
  });
});

describe('negative lists', () => {
  it('--layers -4,-1 reads like --layers=-4,-1 (embed) and --seg-layers alike', () => {
    for (const form of [['--layers', '-4,-1'], ['--layers=-4,-1'], ['--layers', '-4, -1']]) {
      expect(parseCli(withBase('embed', form)).layers, form.join(' ')).toMatch(/^-4, ?-1$/);
    }
    expect(parseCli(withBase('embed', ['--layers', '-2'])).layers).toBe('-2');
    expect(parseCli(withBase('segment', ['--seg-layers', '-4,-3,-2,-1']))['seg-layers']).toBe('-4,-3,-2,-1');
    // after --, launch's child command is passed on untouched
    expect(parseCli(['launch', '--nproc-per-node', '2', '--', 'train', '--layers', '-4,-1'])._.slice(1)).toEqual(['train', '--layers', '-4,-1']);
    expect(() => parseCli(withBase('embed', ['--layers', 'x']))).toThrow(/comma-separated integers/);
  });

  it('end to end: embed --layers -4,-1 is no longer "Unknown argument: 4"', () => {
    // A missing input is the first error after parsing: the list itself was accepted.
    const r = cli(['embed', '--arch', 'vit_small', path.join(repoRoot, 'no-such.png'), '--out', 'o.safetensors', '--layers', '-4,-1']);
    expect(r.stderr).not.toMatch(/Unknown argument/);
    expect(r.stderr).toMatch(/no-such\.png: no such file/);
    expect(r.code).toBe(2);
  });
});

describe('train --print-config', () => {
  it('prints without output= and init.weights=, listing them as unset', () => {
    for (const args of [['train', '--print-config'], ['train', '--config', 'cxformer_small', '--print-config']]) {
      const r = cli(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^output: \?\?\?$/m);
      expect(r.stdout).toMatch(/^# unset \(required to train\): output(, init\.weights)?$/m);
      expect(r.libtorch).toBe(false);
    }
    const full = cli(['train', '--config', 'cxformer_small', '--print-config', 'output=runs/x', 'init.weights=w']);
    expect(full.code).toBe(0);
    expect(full.stdout).toMatch(/^output: runs\/x$/m);
    expect(full.stdout).not.toMatch(/# unset/);
  });

  it('still refuses bad values, and training itself still needs the required keys', () => {
    const bad = cli(['train', '--config', 'demo', '--print-config', 'optim.epochs=abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Expected an integer >= 1 for optim\.epochs \(from command line\) but received "abc"/);
    const run = cli(['train', '--config', 'demo']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Missing required key output/);
  });
});

describe('a closed stdout (cxformer … | head)', () => {
  /** Runs the CLI with a stdout pipe that is closed before the output is written; returns status and stderr. */
  function closedPipe(args: string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // the reader is gone before the first write
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  it.each([[['--help']], [['info', '--arch', 'vit_small', '--json']], [['train', '--config', 'demo', '--print-config']], [['finetune', '--help']]])('%j exits quietly', async (args) => {
    const r = await closedPipe(args);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled|\n\s+at /);
    expect(r.code).toBe(0);
  });

  it('with a real `head -1`', () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${MAIN}" --help | head -1 >/dev/null; echo "status \${PIPESTATUS[0]}" >&2`], { encoding: 'utf8' });
    expect(r.stderr).toMatch(/status 0/);
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
  });
});
