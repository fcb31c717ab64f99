/**
 * `cxformer label` end to end (built dist/cli/main.js in a child process; `npm run build` first): a synth run's
 * reports.csv labelled back into its labels.csv cells, the rules labeler to stdout, labels:FILE, empty reports,
 * bad inputs (exit 2 and a message naming the file, row or column), and no LibTorch.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../../src/data/csv.js';
import { synthDataset } from '../../src/data/synth.js';
import { CHEXBERT_14 } from '../../src/eval/labelers/types.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
let tmp: string;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8', cwd: tmp });
  const stderr = r.stderr.replace(/\n?\[probe\] libtorch_loaded=\w+\n/, '');
  return { code: r.status, stdout: r.stdout, stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-label-cli-'));
  await synthDataset({ out: path.join(tmp, 'ph'), n: 120, seed: 4, size: 32, uncertainRate: 0.1, blankRate: 0.1 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer label', () => {
  it('phantom: labels.csv from reports.csv (atomically to --out), never loads LibTorch', async () => {
    const out = path.join(tmp, 'ph', 'from-text.csv');
    const r = cli(['label', '--labeler', 'phantom', 'ph/reports.csv', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.libtorch).toBe(false);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^label: 120 reports labelled by phantom \(cxformer-synth 1\.0\.0\), 5 classes → .*from-text\.csv\n$/);
    expect((await readdir(path.join(tmp, 'ph'))).filter((f) => f.includes('.tmp'))).toEqual([]);
    const got = parseCsv(await readFile(out, 'utf8'));
    const want = parseCsv(await readFile(path.join(tmp, 'ph', 'labels.csv'), 'utf8'));
    const cols = ['Path', 'No Finding', 'Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'];
    expect(got.header).toEqual(cols);
    let blankNoFinding = 0;
    want.rows.forEach((w, i) => {
      const cells = cols.map((c) => w[want.header.indexOf(c)] as string);
      // No Finding is blank exactly where the text cannot decide it (a hedged finding, none positive).
      const findings = cells.slice(2);
      if (findings.includes('-1.0') && !findings.includes('1.0')) {
        cells[1] = '';
        blankNoFinding++;
      }
      expect(got.rows[i]).toEqual(cells);
    });
    expect(blankNoFinding).toBeGreaterThan(0);
  });

  it('rules: 14 CheXbert columns to stdout', () => {
    const r = cli(['label', '--labeler', 'rules', 'ph/reports.csv', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const t = parseCsv(r.stdout);
    expect(t.header).toEqual(['Path', ...CHEXBERT_14]);
    expect(t.rows).toHaveLength(120);
  });

  it('other columns, an empty report and an unread sentence: warnings with row and id, exit 0', async () => {
    const f = path.join(tmp, 'gen.csv');
    await writeFile(f, 'id,Report\na,No pneumothorax.\nb,\nc,The lungs look fine.\n');
    const r = cli(['label', '--labeler', 'phantom', f, '--column', 'Report', '--id-column', 'id']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('id,No Finding,Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax\na,0.0,,,,0.0\nb,0.0,,,,\nc,0.0,,,,\n');
    expect(r.stderr).toContain(`warning: ${f}: line 3 (row 2, id b): empty report in column 'Report'`);
    expect(r.stderr).toContain(`warning: ${f}: line 4 (row 3, id c): sentence outside the phantom report grammar: 'the lungs look fine'`);
    expect(r.stderr).toMatch(/2 warning\(s\)/);
  });

  it('labels:FILE looked up by id', async () => {
    const lab = path.join(tmp, 'chexbert.csv');
    await writeFile(lab, 'Path,Cardiomegaly,Edema\nx1,1.0,\nx2,,-1.0\n');
    const rep = path.join(tmp, 'r.csv');
    await writeFile(rep, 'Path,Findings\nx2,text two\nx1,text one\n');
    const r = cli(['label', '--labeler', `labels:${lab}`, rep, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Path,Cardiomegaly,Edema\nx2,,-1.0\nx1,1.0,\n');
    await writeFile(rep, 'Path,Findings\nx2,text two\nx3,text three\n');
    const m = cli(['label', '--labeler', `labels:${lab}`, rep]);
    expect(m.code).toBe(2);
    expect(m.stderr).toContain(`${lab}: 1 of 2 report ids have no row (key column Path): 'x3'`);
  });

  it('bad inputs: exit 2 naming the file, line, row or column', async () => {
    const unknown = cli(['label', '--labeler', 'chexbert', 'ph/reports.csv']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown labeler 'chexbert': expected phantom, rules or labels:FILE/);

    const noCol = cli(['label', '--labeler', 'rules', 'ph/labels.csv']);
    expect(noCol.code).toBe(2);
    expect(noCol.stderr).toContain("ph/labels.csv: line 1: no column 'Findings' (--column); the header has: Path, Sex, Age");
    const noId = cli(['label', '--labeler', 'rules', 'ph/reports.csv', '--id-column', 'study']);
    expect(noId.code).toBe(2);
    expect(noId.stderr).toContain("no column 'study' (--id-column); the header has: Path, Findings");

    const bad = path.join(tmp, 'bad.csv');
    await writeFile(bad, 'Path,Findings\na,ok\nb,too,many\n');
    const ragged = cli(['label', '--labeler', 'rules', bad]);
    expect(ragged.code).toBe(2);
    expect(ragged.stderr).toContain(`${bad}: line 3 (row 2): has 3 fields, expected 2`);

    const lab = path.join(tmp, 'badlab.csv');
    await writeFile(lab, 'Path,Cardiomegaly\na,1.0\nb,yes\n');
    const badCell = cli(['label', '--labeler', `labels:${lab}`, bad.replace('bad.csv', 'r.csv')]);
    expect(badCell.code).toBe(2);
    expect(badCell.stderr).toContain(`${lab}: line 3 (row 2), column 'Cardiomegaly': expected 1, 1.0, 0, 0.0, -1, -1.0 or blank, found 'yes'`);

    const missing = cli(['label', '--labeler', 'rules', 'nope.csv']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.csv');
    for (const r of [unknown, noCol, ragged, badCell, missing]) expect(r.libtorch).toBe(false);
  });
});
