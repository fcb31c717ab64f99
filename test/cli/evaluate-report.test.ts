/**
 * `cxformer evaluate --task report` end to end (built dist/cli/main.js in a child process; `npm run build` first):
 * phantom predictions scored under a protocol with the phantom labeler, the files it writes, id-keyed imported
 * labels, RadGraph annotations, bad input (exit 2 naming the file and line), and no LibTorch.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatCsv, parseCsv } from '../../src/data/csv.js';
import { synthDataset } from '../../src/data/synth.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
let tmp: string;
let rows: { id: string; text: string }[] = [];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8', cwd: tmp });
  const stderr = r.stderr.replace(/\n?\[probe\] libtorch_loaded=\w+\n/, '');
  return { code: r.status, stdout: r.stdout, stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-eval-report-cli-'));
  await synthDataset({ out: path.join(tmp, 'ph'), n: 80, seed: 6, size: 32 });
  const t = parseCsv(await readFile(path.join(tmp, 'ph', 'reports.csv'), 'utf8'));
  rows = t.rows.map((r) => ({ id: r[0] as string, text: r[1] as string }));
  // A "model" that returns the report of another image; one empty report.
  const preds = rows.map((r, i) => JSON.stringify({ id: r.id, generated: i === 0 ? '' : rows[(i * 5 + 1) % rows.length]!.text }));
  await writeFile(path.join(tmp, 'preds.jsonl'), `${preds.join('\n')}\n`);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer evaluate --task report', () => {
  it('scores phantom predictions with the phantom labeler, writes report.json/md and pairs.jsonl, never loads LibTorch', async () => {
    const r = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--labeler', 'phantom', '--protocol', 'all', '--bootstrap', '100', '--out', 'eval']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.libtorch).toBe(false);
    expect(r.stderr).toMatch(/ BLEU-4: \d+\.\d\d {2}\(bootstrap median \[95 % CI\] \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]\)/);
    expect(r.stderr).toMatch(/ CIDEr-D \(R2Gen-cleaned\): \d\.\d{4}/);
    expect(r.stderr).toMatch(/RG_ER \(RadGraph partial\): not computed \(no RadGraph annotations/);
    expect(r.stderr).toMatch(/evaluate: 80 report pairs, protocol all: .*report\.json/);
    const json = JSON.parse(await readFile(path.join(tmp, 'eval', 'report.json'), 'utf8'));
    expect(json).toMatchObject({ task: 'report', protocol: 'all', pairs: 80, labeler: { name: 'phantom' }, bootstrap: { n: 100, seed: 0 }, input: { emptyHypotheses: 1 } });
    const keys = json.metrics.map((m: { key: string }) => m.key);
    expect(keys).toEqual(expect.arrayContaining(['bleu4', 'rougeL', 'f1_14_macro', 'f1_5_macro_plus', 'pycoco_bleu4', 'cider_d', 'f1_findings_micro']));
    const pairs = (await readFile(path.join(tmp, 'eval', 'pairs.jsonl'), 'utf8')).trim().split('\n');
    expect(pairs).toHaveLength(80);
    expect(JSON.parse(pairs[0]!)).toMatchObject({ id: rows[0]!.id, generated: '', reference: rows[0]!.text, rougeL: 0 });
    // Same seed, same files.
    const again = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--labeler', 'phantom', '--protocol', 'all', '--bootstrap', '100', '--out', 'eval2', '-q']);
    expect(again.code, again.stderr).toBe(0);
    const strip = (s: string) => s.replace(/"(predictionsFile|referencesFile)": "[^"]*"/g, '');
    expect(strip(await readFile(path.join(tmp, 'eval2', 'report.json'), 'utf8'))).toBe(strip(await readFile(path.join(tmp, 'eval', 'report.json'), 'utf8')));
  });

  it('takes id-keyed labels computed elsewhere for both sides (labels:GENERATED,REFERENCE)', async () => {
    // The reference labels are the phantom labels.csv; the "generated" labels say Cardiomegaly 1 everywhere.
    const labels = parseCsv(await readFile(path.join(tmp, 'ph', 'labels.csv'), 'utf8'));
    const cls = ['Cardiomegaly', 'Pleural Effusion'];
    const col = (c: string) => labels.header.indexOf(c);
    await writeFile(path.join(tmp, 'ref-labels.csv'), formatCsv(['Path', ...cls], labels.rows.map((r) => [r[0]!, ...cls.map((c) => r[col(c)]!)])));
    await writeFile(path.join(tmp, 'gen-labels.csv'), formatCsv(['Path', ...cls], labels.rows.map((r) => [r[0]!, '1.0', ''])));
    const r = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--labeler', 'labels:gen-labels.csv,ref-labels.csv', '--bootstrap', '0', '--out', 'eval-lab']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(await readFile(path.join(tmp, 'eval-lab', 'report.json'), 'utf8'));
    const m = Object.fromEntries(json.metrics.map((x: { key: string; value: number }) => [x.key, x.value]));
    // Micro F1 over the 5 CheXbert classes: only Cardiomegaly and Pleural Effusion can be positive.
    const card = labels.rows.map((x) => x[col('Cardiomegaly')] === '1.0');
    const eff = labels.rows.map((x) => x[col('Pleural Effusion')] === '1.0');
    const tp = card.filter(Boolean).length;
    const fp = card.length - tp;
    const fn = eff.filter(Boolean).length;
    expect(m.f1_5_micro).toBeCloseTo((100 * 2 * tp) / (2 * tp + fp + fn), 10);
    expect(json.bootstrap).toBeNull();
  });

  it('takes RadGraph annotations keyed by report id', async () => {
    const ann = (ids: string[], label: string) => Object.fromEntries(ids.map((id) => [id, { text: 'heart enlarged', entities: { '1': { tokens: 'heart', label: 'Anatomy::definitely present', start_ix: 0, end_ix: 0, relations: [] }, '2': { tokens: 'enlarged', label, start_ix: 1, end_ix: 1, relations: [['located_at', '1']] } } }]));
    const ids = rows.map((r) => r.id);
    await writeFile(path.join(tmp, 'rg-ref.json'), JSON.stringify(ann(ids, 'Observation::definitely present')));
    await writeFile(path.join(tmp, 'rg-hyp.json'), JSON.stringify(ann(ids, 'Observation::definitely absent')));
    const r = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--radgraph', 'rg-hyp.json,rg-ref.json', '--bootstrap', '0', '--out', 'eval-rg']);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(await readFile(path.join(tmp, 'eval-rg', 'report.json'), 'utf8'));
    // partial: {(heart, Anatomy)} ∪ {(enlarged, Obs, True)} each side; one of two items shared → F1 0.5.
    expect(json.metrics.find((x: { key: string }) => x.key === 'rg_er').value).toBeCloseTo(50, 12);
  });

  it('refuses bad input with the file and line, exit 2', async () => {
    await writeFile(path.join(tmp, 'bad.jsonl'), '{"id": "a", "generated": "x"}\n{"id": "b"}\n');
    const bad = cli(['evaluate', '--task', 'report', '--predictions', 'bad.jsonl', '--out', 'e']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.jsonl: line 2.*no generated text: expected one of the keys 'generated', 'hypothesis', 'prediction', 'report', found 'id'/);
    const noRef = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--out', 'e']);
    expect(noRef.code).toBe(2);
    expect(noRef.stderr).toMatch(/80 of 80 predictions have no reference .*pass --references FILE/);
    const missing = cli(['evaluate', '--task', 'report', '--out', 'e']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/Missing required argument: predictions/);
    const lab = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--labeler', 'chexbert', '--out', 'e']);
    expect(lab.code).toBe(2);
    expect(lab.stderr).toMatch(/unknown labeler 'chexbert'/);
    const rg = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--radgraph', 'only-one.json', '--out', 'e']);
    expect(rg.code).toBe(2);
    expect(rg.stderr).toMatch(/--radgraph takes two files, HYP\.json,REF\.json; got 'only-one\.json'/);
    // labels:GEN,REF wants two id-keyed files; a text-keyed one (CheXbert's 'Report Impression') is named.
    await writeFile(path.join(tmp, 'text-keyed.csv'), 'Report Impression,Cardiomegaly\nThe heart is enlarged.,1.0\n');
    const tk = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--references', 'ph/reports.csv', '--labeler', 'labels:text-keyed.csv,text-keyed.csv', '--out', 'e']);
    expect(tk.code).toBe(2);
    expect(tk.stderr).toMatch(/text-keyed\.csv: labels:GENERATED,REFERENCE needs two files keyed by report id; this one is keyed by report text/);
    const proto = cli(['evaluate', '--task', 'report', '--predictions', 'preds.jsonl', '--protocol', 'coco', '--out', 'e']);
    expect(proto.code).toBe(2);
    expect(proto.stderr).toMatch(/Invalid values:[\s\S]*protocol/);
  });
});
