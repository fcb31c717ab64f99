/**
 * Progress of a long command through the built CLI (issue #14): `synth` prints progress lines with an ETA to stderr
 * when stderr is not a terminal (plain lines, no `\r`), and nothing but errors with `-q`. Small images keep it cheap.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-progress-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function synth(...extra: string[]) {
  const r = spawnSync(process.execPath, [MAIN, 'synth', '--out', path.join(tmp, extra.join('') || 'plain'), '--n', '40', '--size', '64', ...extra], {
    encoding: 'utf8',
    env: { ...process.env, CXFORMER_PROGRESS_TTY: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('synth --n 40', () => {
  it('prints progress lines with an ETA to stderr, then its summary', () => {
    const r = synth();
    expect(r.code).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    const progressLines = lines.filter((l) => /^synth: images \d+\/40 \(\d+ %\), \S+ elapsed, ETA \S+$/.test(l));
    expect(progressLines.length).toBeGreaterThanOrEqual(1);
    expect(progressLines.length).toBeLessThanOrEqual(12); // per 10 % at most (plus the first), not one per image
    expect(r.stderr).not.toContain('\r');
    expect(lines.at(-1)).toMatch(/^synth: wrote 40 images/);
  });

  it('-q prints nothing', () => {
    const r = synth('-q');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('');
  });
});
