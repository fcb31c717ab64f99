/**
 * `cxformer report RUN` end to end (built dist/cli/main.js in a child process): the page of a small hand-made run
 * folder, exit codes, errors naming the path, and no LibTorch (the command reads files only).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../unit/golden.js';
import { fullFinetuneRun, pretrainRun, tempDir } from '../report/fixtures.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
let tmp: string;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8' });
  const stderr = r.stderr.replace(/\n?\[probe\] libtorch_loaded=\w+\n/, '');
  return { code: r.status, stdout: r.stdout, stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

beforeAll(async () => {
  tmp = await tempDir('cxf-report-cli-');
  await pretrainRun(path.join(tmp, 'pretrain'));
  await fullFinetuneRun(path.join(tmp, 'ft'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer report', () => {
  it('writes RUN/report.html, prints its path, never loads LibTorch', async () => {
    const run = path.join(tmp, 'pretrain');
    const r = cli(['report', run]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.libtorch).toBe(false);
    expect(r.stdout).toBe(`report (pretraining): ${path.join(run, 'report.html')}\n`);
    expect(r.stderr).toBe('');
    const html = await readFile(path.join(run, 'report.html'), 'utf8');
    for (const id of ['summary', 'curves', 'evaluation', 'plots', 'config']) expect(html).toContain(`<section id="${id}">`);
  });

  it('--out writes elsewhere; -q prints nothing', async () => {
    const out = path.join(tmp, 'ft-page.html');
    const r = cli(['report', path.join(tmp, 'ft'), '--out', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    expect(existsSync(out)).toBe(true);
    expect(existsSync(path.join(tmp, 'ft', 'report.html'))).toBe(false);
  });

  it('a missing folder, a file and a folder that is no run: exit 2, naming the path, no LibTorch', async () => {
    const missing = path.join(tmp, 'nope');
    const a = cli(['report', missing]);
    expect(a.code).toBe(2);
    expect(a.libtorch).toBe(false);
    expect(a.stderr).toBe(`cxformer report: ${missing}: no such folder (expected a run folder of cxformer train, finetune or evaluate)\n`);
    const file = path.join(tmp, 'file.txt');
    await writeFile(file, 'x');
    const b = cli(['report', file]);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain(`${file}: expected a run folder, found a file`);
    const c = cli(['report', tmp]);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain(`cxformer report: ${tmp} is not a cxformer run folder: expected one of resolved.yaml (cxformer train)`);
  });

  it('no RUN, or an extra argument: a usage error, exit 2', () => {
    const a = cli(['report']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/Not enough non-option arguments/);
    const b = cli(['report', tmp, 'extra']);
    expect(b.code).toBe(2);
  });

  it('a page that cannot be written: exit 2, naming the path', () => {
    const out = path.join(tmp, 'no-such-dir', 'page.html');
    const r = cli(['report', path.join(tmp, 'ft'), '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(path.join(tmp, 'no-such-dir'));
  });
});
