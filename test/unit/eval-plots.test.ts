import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/data/random.js';
import { averagePrecision, calibrationCurve, precisionRecallCurve, rocCurve } from '../../src/eval/metrics.js';
import { calibrationSvg, curvePixels, escapeXml, niceStep, prStepPoints, prSvg, rocSvg, svgSize, svgToPng, writePlot } from '../../src/eval/plots.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-eval-plots-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const count = (s: string, re: RegExp): number => (s.match(re) ?? []).length;

describe('ROC SVG', () => {
  const roc = rocCurve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]).value!;
  const svg = rocSvg(
    [
      { name: 'Atelectasis', fpr: roc.fpr, tpr: roc.tpr, auc: 0.75 },
      { name: 'A<b>&"c"', fpr: [0, 1], tpr: [0, 1], auc: 0.5 },
    ],
    { title: 'Test ROC' },
  );

  it('has the SVG root, background, title, axes labels, 6 ticks per axis and one curve per class', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('>Test ROC</text>');
    expect(svg).toContain('>False positive rate (1 − specificity)</text>');
    expect(svg).toContain('>True positive rate (sensitivity)</text>');
    for (const t of ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']) expect(count(svg, new RegExp(`>${t.replace('.', '\\.')}</text>`, 'g'))).toBe(2);
    expect(count(svg, /<polyline class="curve"/g)).toBe(2);
    expect(svg).toContain('class="chance"');
    expect(svg).toContain('font-family="DejaVu Sans');
  });

  it('maps (fpr, tpr) onto the 440-px plot square at (80, 50) and puts the AUROC in the legend', () => {
    // (0,0) → (80, 490), (0.5, 0.5) → (300, 270), (1, 1) → (520, 50)
    expect(svg).toContain('points="80,490 80,270 300,270 300,50 520,50"');
    expect(svg).toContain('>Atelectasis (AUROC 0.750)</text>');
    expect(svg).toContain('>Chance (AUROC 0.500)</text>');
  });

  it('escapes class names', () => {
    expect(svg).toContain('>A&lt;b&gt;&amp;&quot;c&quot; (AUROC 0.500)</text>');
    expect(svg).not.toContain('A<b>');
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&apos;');
  });

  it('rasterises with sharp to the expected size, with the curve colour present', async () => {
    const { width, height } = svgSize(svg);
    const png = await svgToPng(svg, 2);
    const meta = await sharp(png).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(2 * width);
    expect(meta.height).toBe(2 * height);
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    let blue = 0;
    let white = 0;
    for (let i = 0; i < data.length; i += info.channels) {
      const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      if (Math.abs(r - 0x1f) < 12 && Math.abs(g - 0x77) < 12 && Math.abs(b - 0xb4) < 12) blue++;
      if (r === 255 && g === 255 && b === 255) white++;
    }
    expect(blue).toBeGreaterThan(500);
    expect(white / (info.width * info.height)).toBeGreaterThan(0.7);
    const one = await sharp(await svgToPng(svg, 1)).metadata();
    expect([one.width, one.height]).toEqual([width, height]);
  });
});

describe('precision–recall SVG', () => {
  it('draws steps whose area is the average precision', () => {
    const rnd = mulberry32(3);
    const s = Array.from({ length: 60 }, () => Math.round(rnd() * 10) / 10);
    const y = s.map((v) => (rnd() < v ? 1 : 0));
    const pr = precisionRecallCurve(s, y).value!;
    const st = prStepPoints(pr.recall, pr.precision);
    let area = 0;
    for (let i = 0; i + 1 < st.x.length; i++) area += (st.x[i]! - st.x[i + 1]!) * (st.y[i]! + st.y[i + 1]!) / 2;
    expect(area).toBeCloseTo(averagePrecision(s, y).value!, 12);
    const svg = prSvg([{ name: 'Edema', precision: pr.precision, recall: pr.recall, ap: averagePrecision(s, y).value! }]);
    expect(svg).toContain(`>Edema (AP ${averagePrecision(s, y).value!.toFixed(3)})</text>`);
    expect(svg).toContain('>Recall (sensitivity)</text>');
    expect(svg).toContain('>Precision (PPV)</text>');
    expect(count(svg, /<polyline class="curve"/g)).toBe(1);
  });

  it('curvePixels drops repeated points and the middle of straight axis-aligned runs, keeping reversals', () => {
    const id = (v: number): number => v * 100;
    expect(curvePixels([0, 0, 0.5, 1, 1, 1], [0, 1, 1, 1, 1, 0.5], id, id)).toEqual([
      [0, 0],
      [0, 100],
      [100, 100],
      [100, 50],
    ]);
    expect(curvePixels([0, 1, 0.5], [0, 0, 0], id, id)).toEqual([
      [0, 0],
      [100, 0],
      [50, 0],
    ]);
    expect(curvePixels([0, Number.NaN, 0.5], [0, 1, 0.25], id, id)).toEqual([
      [0, 0],
      [50, 25],
    ]);
  });

  it('prStepPoints follows matplotlib steps-post', () => {
    expect(prStepPoints([1, 0.5, 0], [0.5, 1, 1])).toEqual({ x: [1, 0.5, 0.5, 0, 0], y: [0.5, 0.5, 1, 1, 1] });
  });
});

describe('calibration SVG', () => {
  it('has a reliability line with one marker per non-empty bin, the diagonal and a 10-bar histogram', () => {
    const p = [0.05, 0.15, 0.12, 0.55, 0.58, 0.91, 0.95];
    const yA = [0, 0, 1, 1, 0, 1, 1];
    const yB = [0, 1, 0, 0, 1, 1, Number.NaN];
    const a = calibrationCurve(p, yA);
    const b = calibrationCurve(p, yB);
    const counts = Array.from(a.counts, (v, i) => v + b.counts[i]!);
    const svg = calibrationSvg(
      [
        { name: 'A', probPred: a.probPred, probTrue: a.probTrue },
        { name: 'B', probPred: b.probPred, probTrue: b.probTrue },
      ],
      { edges: a.edges, counts },
    );
    expect(count(svg, /<circle class="marker"/g)).toBe(a.probPred.length + b.probPred.length);
    expect(a.probPred.length).toBe(4);
    expect(count(svg, /<rect class="bar"/g)).toBe(10);
    expect(svg).toContain('class="diagonal"');
    expect(svg).toContain('>Perfectly calibrated</text>');
    expect(svg).toContain('>Fraction of positives</text>');
    expect(svg).toContain('>Mean predicted probability</text>');
    expect(svg).toContain('>Count</text>');
    // histogram bars: the tallest bin (0.1, 0.2] holds 4 predictions
    expect(Math.max(...counts)).toBe(4);
  });

  it('niceStep picks 1/2/5 × 10^k', () => {
    expect(niceStep(4, 4)).toBe(1);
    expect(niceStep(430, 3)).toBe(200);
    expect(niceStep(1000, 4)).toBe(500);
    expect(niceStep(0)).toBe(1);
  });
});

describe('writePlot', () => {
  it('writes SVG and PNG atomically (no temporary files left)', async () => {
    const svg = rocSvg([{ name: 'X', fpr: [0, 0, 1], tpr: [0, 1, 1], auc: 1 }]);
    const out = await writePlot(dir, 'roc', svg, { scale: 1 });
    expect(await readFile(out.svg, 'utf8')).toBe(svg);
    const meta = await sharp(await readFile(out.png!)).metadata();
    expect([meta.width, meta.height]).toEqual([svgSize(svg).width, svgSize(svg).height]);
    expect((await readdir(dir)).sort()).toEqual(['roc.png', 'roc.svg']);
    const svgOnly = await writePlot(dir, 'pr', svg, { png: false });
    expect(svgOnly.png).toBeUndefined();
    expect((await readdir(dir)).sort()).toEqual(['pr.svg', 'roc.png', 'roc.svg']);
  });
});
