/** The run report page (src/report): reading run folders of each kind, the page's sections, escaping, atomic write. */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { autoRunReport, detectKind, readRunFolder, renderRunReport, runReportEnabled, SECTION_IDS, writeRunReport } from '../../src/report/index.js';
import { inlineSvg } from '../../src/report/page.js';
import { parseJsonl } from '../../src/report/run.js';
import * as fx from './fixtures.js';

let root: string;
const runs: Record<string, string> = {};

beforeAll(async () => {
  root = await fx.tempDir();
  runs.pretrain = await fx.pretrainRun(path.join(root, 'pretrain'));
  runs.full = await fx.fullFinetuneRun(path.join(root, 'full'));
  runs.seg = await fx.segmentationRun(path.join(root, 'seg'));
  runs.probe = await fx.linearProbeRun(path.join(root, 'probe'));
  runs.evaluation = await fx.evaluationFolder(path.join(root, 'eval-only'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function page(dir: string): Promise<string> {
  return renderRunReport(await readRunFolder(dir), { generatedAt: new Date('2026-01-05T00:00:00Z') });
}

/** The inner HTML of `<section id="…">`. */
function section(html: string, id: string): string {
  const m = new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`).exec(html);
  if (!m) throw new Error(`no section ${id}`);
  return m[1]!;
}
const points = (html: string, name: string) => [...html.matchAll(new RegExp(`data-name="${name}" data-points="(\\d+)"`, 'g'))].map((m) => Number(m[1]));

describe('detectKind', () => {
  it('tells each kind of run folder by the file its command writes', () => {
    expect(detectKind(runs.pretrain!)).toBe('pretraining');
    expect(detectKind(runs.full!)).toBe('full fine-tuning');
    expect(detectKind(runs.seg!)).toBe('segmentation');
    expect(detectKind(runs.probe!)).toBe('linear probe');
    expect(detectKind(runs.evaluation!)).toBe('evaluation');
    expect(detectKind(root)).toBeNull();
  });
});

describe('parseJsonl', () => {
  it('keeps the lines that parse and counts the rest (a torn last line of a killed run)', () => {
    expect(parseJsonl('{"a":1}\n\n[1]\n{"b":2}\n{"c":')).toEqual({ records: [{ a: 1 }, { b: 2 }], unreadable: 2 });
  });
});

describe('the page', () => {
  it('has every section, each with a stable id, for every kind of run', async () => {
    for (const dir of Object.values(runs)) {
      const html = await page(dir);
      for (const id of SECTION_IDS) expect(html, `${dir}: #${id}`).toContain(`<section id="${id}">`);
      expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    }
  });

  it('pretraining: summary with absolute paths, times, stage timings and machine; curves with the right points', async () => {
    const html = await page(runs.pretrain!);
    const s = section(html, 'summary');
    expect(s).toContain('Pretraining (cxformer train)');
    for (const f of ['metrics.jsonl', 'train.log', 'resolved.yaml', 'checkpoints', 'exported']) expect(s).toContain(`<code>${path.join(runs.pretrain!, f)}</code>`);
    expect(s).toContain('2026-01-02 10:00:00 UTC → 2026-01-02 10:03:30 UTC');
    expect(s).toContain('3m30s'); // 210.5 s, as the progress lines print durations (src/run/duration.ts)
    expect(s).toContain('host testhost; device cpu; threads 2');
    expect(s).toMatch(/augment<\/td><td>600 ms<\/td><td>13\.3 %/);
    expect(s).toContain('1 line(s) of metrics.jsonl did not parse');
    // the probe's first and last scores
    expect(s).toContain('probe_knn_macro_auroc</td><td>0.5 (baseline: the starting encoder) → 0.66 (iteration 11), +0.160');
    const c = section(html, 'curves');
    expect(points(c, 'total_loss')).toEqual([fx.PRETRAIN_ITERATIONS]);
    // koleo_loss is null once: a gap, not a zero
    expect(points(c, 'koleo_loss')).toEqual([fx.PRETRAIN_ITERATIONS - 1]);
    expect(points(c, 'probe_knn_macro_auroc')).toEqual([fx.PRETRAIN_PROBES]);
    for (const k of ['lr', 'wd', 'momentum', 'teacherTemp', 'grad_norm_backbone', 'images_per_s', 'ms_backward', 'teacher_entropy_ratio']) expect(points(c, k), k).toEqual([fx.PRETRAIN_ITERATIONS]);
    expect(c).toContain('1.0: uniform outputs (H = ln K)');
    expect(c).toContain(`ln K = ${Math.log(2048).toFixed(3)} (uniform)`);
    // no evaluation or plots: said so, naming where they were looked for
    expect(section(html, 'evaluation')).toContain(`No evaluation: ${path.join(runs.pretrain!, 'eval', 'metrics.json')} not found`);
    expect(section(html, 'plots')).toContain('No plots');
    const cfg = section(html, 'config');
    expect(cfg).toMatch(/<details><summary>resolved\.yaml/);
    expect(cfg).toContain('head_n_prototypes: 2048');
  });

  it('full fine-tuning: epoch curves, the classification table with the statistic report.md shows, plots inlined', async () => {
    const html = await page(runs.full!);
    const c = section(html, 'curves');
    for (const k of ['train_loss', 'val_loss', 'val_macro_auroc', 'lr', 'images_per_s', 'seconds']) expect(points(c, k), k).toEqual([fx.FT_EPOCHS]);
    const e = section(html, 'evaluation');
    expect(e).toContain('bootstrap median [2.5th, 97.5th percentile] over 100 resamples of patients (seed 0), × 100, as report.md');
    // formatCardCell: median [lo, hi] × 100, as report.md
    expect(e).toContain('<td>81.33 [76.23, 85.23]</td>');
    expect(e).toContain('<td>Cardiomegaly</td><td>60</td><td>10</td><td>80.10 [75.00, 84.00]</td>');
    // the class name is escaped, never raw
    expect(html).not.toContain(fx.NASTY_CLASS);
    expect(e).toContain('&lt;b&gt;Effusion &amp; &quot;fluid&quot;&lt;/b&gt;');
    const p = section(html, 'plots');
    expect(p).toContain('<figure class="plot" id="plot-roc"><svg width="200"');
    expect(p).toMatch(/<figure class="plot" id="plot-pr"><img alt="Precision–recall curves" src="data:image\/png;base64,iVBOR/);
    expect(section(html, 'config')).toContain('&quot;mode&quot;: &quot;full&quot;');
    expect(section(html, 'summary')).toContain('device cpu; threads 2');
  });

  it('segmentation: step and epoch curves apart, nested Dice fields, the Dice table with intervals, overlays as PNG data', async () => {
    const html = await page(runs.seg!);
    const c = section(html, 'curves');
    expect(points(c, 'loss')).toEqual([fx.SEG_STEPS]);
    expect(points(c, 'valDice/left lung')).toEqual([fx.SEG_EPOCHS]);
    expect(points(c, 'valDiceAvg')).toEqual([fx.SEG_EPOCHS]);
    expect(c).toContain('Loss terms (per step)');
    expect(c).toContain('Probe and validation scores (per epoch)');
    const e = section(html, 'evaluation');
    expect(e).toContain('Dice point estimates with 95 % bootstrap percentile intervals over 50 resamples of 20 patients');
    expect(e).toContain('<td>left lung</td><td>0.9100 [0.8800, 0.9100]</td>');
    expect(e).toContain('<td><strong>dice_avg</strong> (3 classes)</td><td>0.8933 [0.8800, 0.9100]</td>');
    const p = section(html, 'plots');
    expect(p.match(/<img alt="[ab]\.png" src="data:image\/png;base64,/g)).toHaveLength(2);
    expect(p).toContain('2 of 2 from');
    // the plot's XML declaration is not inlined into HTML
    expect(p).not.toContain('<?xml');
    expect(section(html, 'summary')).toContain('Epochs logged</td><td>2 (last 2)');
  });

  it('linear probe: history.jsonl curves; no settings file, said so', async () => {
    const html = await page(runs.probe!);
    expect(points(section(html, 'curves'), 'trainLoss')).toEqual([fx.FT_EPOCHS]);
    expect(section(html, 'curves')).toContain('Constant over the run (not drawn): trainEntries = 100, skippedBatches = 0.');
    expect(section(html, 'config')).toContain('No settings file');
    expect(section(html, 'evaluation')).toContain('<td>Nodule</td>');
  });

  it('evaluation folder: its own metrics.json and plots; no curves, said so', async () => {
    const html = await page(runs.evaluation!);
    expect(section(html, 'curves')).toContain('No training curves: an evaluation folder has no metrics.jsonl');
    expect(section(html, 'evaluation')).toContain(`<code>${path.join(runs.evaluation!, 'metrics.json')}</code>`);
    expect(section(html, 'plots')).toContain('id="plot-calibration"');
    expect(section(html, 'summary')).toMatch(/Ran<\/td><td>files last written \d{4}-/);
  });

  it('is self-contained: no http(s) reference at all, no external resource, a CSP that forbids fetching', async () => {
    for (const dir of Object.values(runs)) {
      const html = await page(dir);
      expect(html).not.toMatch(/https?:\/\//i);
      expect(html).not.toMatch(/\s(src|href)="(?!data:|#)/);
      expect(html).not.toMatch(/@import|url\(/);
      expect(html).toContain(`content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-`);
    }
  });

  it('a metrics.json that is not JSON is an input error naming the file', async () => {
    const dir = path.join(root, 'bad-eval');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'metrics.json'), '{"format":');
    await expect(readRunFolder(dir)).rejects.toMatchObject({ code: 'CXF_INPUT', message: expect.stringContaining(`${path.join(dir, 'metrics.json')}: not JSON`) });
  });

  it('a run path that cannot be read says why, instead of "no such folder"', async () => {
    const loop = path.join(root, 'loop');
    await symlink(loop, loop); // stat fails with ELOOP
    await expect(readRunFolder(loop)).rejects.toMatchObject({ code: 'CXF_INPUT', message: expect.stringMatching(new RegExp(`^${loop}: cannot read it \\(ELOOP`)) });
  });

  it('a metrics.json that is JSON but not an object says what it found', async () => {
    const dir = path.join(root, 'array-eval');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'metrics.json'), '[1, 2]');
    await expect(readRunFolder(dir)).rejects.toMatchObject({ code: 'CXF_INPUT', message: `${path.join(dir, 'metrics.json')}: expected a JSON object, found an array` });
  });

  it('inlineSvg drops the XML declaration, namespaces and scripts', () => {
    expect(inlineSvg('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="1"><script>alert(1)</script><rect/></svg>\n')).toBe('<svg width="1"><rect/></svg>');
  });
});

describe('writeRunReport', () => {
  it('writes RUN/report.html atomically: a new file replaces the old one by rename, no temporary file left', async () => {
    const file = path.join(runs.full!, 'report.html');
    await writeFile(file, 'old page');
    const before = await stat(file);
    const res = await writeRunReport(runs.full!);
    expect(res).toMatchObject({ file, kind: 'full fine-tuning' });
    const after = await stat(file);
    // a rename puts a new inode in place; an in-place rewrite would keep the old one
    expect(after.ino).not.toBe(before.ino);
    expect(res.bytes).toBe(after.size);
    expect((await readdir(runs.full!)).filter((n) => n.includes('.tmp-'))).toEqual([]);
    expect(await readFile(file, 'utf8')).toContain('<section id="summary">');
  });

  it('--out: writes the page elsewhere; an unwritable place fails and leaves nothing', async () => {
    const out = path.join(root, 'pages', 'probe.html');
    await mkdir(path.dirname(out), { recursive: true });
    expect((await writeRunReport(runs.probe!, { out })).file).toBe(out);
    expect(existsSync(out)).toBe(true);
    const missing = path.join(root, 'no-such-dir', 'x.html');
    await expect(writeRunReport(runs.probe!, { out: missing })).rejects.toThrow(/ENOENT/);
    expect(existsSync(path.dirname(missing))).toBe(false);
  });

  it('refuses a missing folder and a folder that is no run, naming the path', async () => {
    await expect(writeRunReport(path.join(root, 'nope'))).rejects.toMatchObject({ code: 'CXF_INPUT', message: expect.stringContaining(`${path.join(root, 'nope')}: no such folder`) });
    await expect(writeRunReport(root)).rejects.toMatchObject({ code: 'CXF_INPUT', message: expect.stringMatching(/is not a cxformer run folder: expected one of resolved\.yaml \(cxformer train\)/) });
  });
});

describe('autoRunReport (end of a run)', () => {
  it('writes the page, is off with CXFORMER_REPORT=0, and warns instead of throwing', async () => {
    const dir = await fx.evaluationFolder(path.join(root, 'auto'));
    expect(runReportEnabled({ CXFORMER_REPORT: '0' })).toBe(false);
    expect(runReportEnabled({ CXFORMER_REPORT: 'off' })).toBe(false);
    expect(runReportEnabled({})).toBe(true);
    const warnings: string[] = [];
    expect(await autoRunReport(dir, (m) => warnings.push(m), { CXFORMER_REPORT: '0' })).toBeNull();
    expect(existsSync(path.join(dir, 'report.html'))).toBe(false);
    expect(await autoRunReport(dir, (m) => warnings.push(m), {})).toBe(path.join(dir, 'report.html'));
    expect(existsSync(path.join(dir, 'report.html'))).toBe(true);
    expect(warnings).toEqual([]);
    // a folder that is not a run: a warning naming the page, no exception
    const bad = path.join(root, 'not-a-run');
    await mkdir(bad, { recursive: true });
    expect(await autoRunReport(bad, (m) => warnings.push(m), {})).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`could not write the run report ${path.join(bad, 'report.html')}`);
  });
});
