/**
 * Progress under `cxformer launch` (issue #14): with the launcher's stderr on a terminal, local rank 0 is told
 * (CXFORMER_PROGRESS_TTY=1) to draw its progress line in place, and the launcher shows it prefixed, rewritten in place,
 * with the other ranks' lines written above it. Without a terminal nothing changes (plain prefixed lines).
 * Small node scripts stand in for the ranks; a fake terminal replays what the launcher wrote.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch } from '../../src/distributed/launch.js';

let tmp: string;
// Rank 0 draws a progress line as src/cli/commands/common.ts does on a terminal; rank 1 prints a plain line meanwhile.
const RANK = `const r = process.env.RANK;
const tty = process.env.CXFORMER_PROGRESS_TTY === '1';
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
if (r === '0') {
  for (let k = 1; k <= 3; k++) { process.stderr.write(tty ? '\\r\\x1b[2Kwork ' + k + '/3' : 'work ' + k + '/3\\n'); await sleep(150); }
  process.stderr.write((tty ? '\\r\\x1b[2K' : '') + 'work: done\\n');
} else {
  await sleep(200);
  process.stderr.write('rank ' + r + ' tty=' + tty + '\\n');
}`;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-launch-progress-'));
  await writeFile(path.join(tmp, 'rank.mjs'), RANK);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A stream that says it is a terminal, keeping what was written. */
function terminal(isTTY: boolean) {
  const s = new PassThrough() as PassThrough & { isTTY?: boolean };
  s.isTTY = isTTY;
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  return { stream: s, text: () => text };
}

/** The lines a terminal shows after `raw`: `\r` returns to column 0, ESC[2K erases the line, `\n` ends it. */
function screen(raw: string): { lines: string[]; shown: Set<string> } {
  const lines: string[] = [];
  const shown = new Set<string>();
  let cur = '';
  for (let i = 0; i < raw.length; i++) {
    if (raw.startsWith('\r\x1b[2K', i)) {
      if (cur) shown.add(cur);
      cur = '';
      i += 4;
    } else if (raw[i] === '\n') {
      lines.push(cur);
      cur = '';
    } else cur += raw[i];
  }
  if (cur) lines.push(cur);
  return { lines, shown };
}

describe('launch: progress lines of the ranks', () => {
  it('on a terminal: rank 0 rewrites one prefixed line in place, other ranks write above it', async () => {
    const err = terminal(true);
    const env = { ...process.env };
    delete env.CXFORMER_PROGRESS_TTY;
    const r = await launch({ nprocPerNode: 2, command: process.execPath, args: [path.join(tmp, 'rank.mjs')], env, stdout: terminal(true).stream, stderr: err.stream, forwardSignals: false });
    expect(r.code).toBe(0);
    const { lines, shown } = screen(err.text());
    // What stays on screen: rank 1's line and rank 0's last state, never a stack of progress lines.
    expect(lines.sort()).toEqual(['[rank 0] work: done', '[rank 1] rank 1 tty=false']);
    // The live line was drawn prefixed, in place.
    expect([...shown].some((l) => /^\[rank 0\] work [123]\/3$/.test(l))).toBe(true);
  });

  it('without a terminal: plain prefixed lines, no rewrites, ranks not told to draw', async () => {
    const err = terminal(false);
    const env = { ...process.env };
    delete env.CXFORMER_PROGRESS_TTY;
    const r = await launch({ nprocPerNode: 2, command: process.execPath, args: [path.join(tmp, 'rank.mjs')], env, stdout: terminal(false).stream, stderr: err.stream, forwardSignals: false });
    expect(r.code).toBe(0);
    expect(err.text()).not.toContain('\r');
    const lines = err.text().trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('[rank 0] work'))).toEqual(['[rank 0] work 1/3', '[rank 0] work 2/3', '[rank 0] work 3/3', '[rank 0] work: done']);
    expect(lines).toContain('[rank 1] rank 1 tty=false');
  });
});
