/** The report page's line charts (src/report/charts.ts) and the chart plan of metrics lines (src/report/curves.ts). */
import { describe, expect, it } from 'vitest';
import { formatTick, formatTicks, lineChartSvg, linearTicks, logTicks } from '../../src/report/charts.js';
import { numericFields, planCharts, xAxisOf } from '../../src/report/curves.js';

/** Number of "x,y" pairs of every polyline of the series named `name`. */
function drawnPoints(svg: string, name: string): number[] {
  const g = new RegExp(`<g class="series" data-name="${name}" data-points="(\\d+)">([\\s\\S]*?)</g>`).exec(svg);
  if (!g) throw new Error(`no series ${name}`);
  return [...g[2]!.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.trim().split(/\s+/).length);
}
const dataPoints = (svg: string, name: string) => Number(new RegExp(`data-name="${name}" data-points="(\\d+)"`).exec(svg)?.[1]);

describe('lineChartSvg', () => {
  const x = Array.from({ length: 50 }, (_, i) => i);
  it('draws every finite point of each series, one polyline per unbroken run', () => {
    const svg = lineChartSvg(
      [
        { name: 'loss', x, y: x.map((i) => 10 - i * 0.1) },
        { name: 'gappy', x, y: x.map((i) => (i === 20 ? null : i === 30 ? Number.NaN : i)) },
      ],
      { title: 'Loss', xLabel: 'iteration' },
    );
    expect(dataPoints(svg, 'loss')).toBe(50);
    expect(drawnPoints(svg, 'loss')).toEqual([50]);
    expect(dataPoints(svg, 'gappy')).toBe(48);
    expect(drawnPoints(svg, 'gappy')).toEqual([20, 9, 19]);
    // 50 points: more than markersUpTo (40), so no markers
    expect(svg).not.toContain('<circle');
    expect(svg.startsWith('<svg class="chart"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  });

  it('marks each point of short series (a probe at two checkpoints shows as two dots)', () => {
    const svg = lineChartSvg([{ name: 'probe', x: [9, 19], y: [0.55, 0.6] }, { name: 'one', x: [5], y: [0.5] }], { title: 'Probe', xLabel: 'iteration' });
    expect(svg.match(/<circle/g)).toHaveLength(3);
    expect(drawnPoints(svg, 'one')).toEqual([]);
  });

  it('escapes names, titles and labels, and never emits the raw text', () => {
    const svg = lineChartSvg([{ name: '<img src=x onerror="a&b">', x: [0, 1], y: [1, 2] }], { title: 'T<&>', xLabel: 'x"', yLabel: "y'", refLines: [{ y: 1, label: '<ref>' }] });
    expect(svg).not.toContain('<img');
    expect(svg).not.toContain('<ref>');
    expect(svg).toContain('&lt;img src=x onerror=&quot;a&amp;b&quot;&gt;');
    expect(svg).toContain('T&lt;&amp;&gt;');
    expect(svg).toContain('&lt;ref&gt;');
  });

  it('draws reference lines, names them in the legend and keeps them in the y range', () => {
    const svg = lineChartSvg([{ name: 'ratio', x: [0, 1, 2], y: [0.5, 0.6, 0.7] }], { title: 'Collapse', xLabel: 'iteration', refLines: [{ y: 1, label: '1.0: uniform outputs' }] });
    expect(svg.match(/<line class="ref"/g)).toHaveLength(1);
    expect(svg).toContain('1.0: uniform outputs');
    // the top tick is 1.0 (the reference line), not the data maximum 0.7
    expect(svg).toMatch(/text-anchor="end">1\.0<\/text>/);
  });

  it('a log scale puts decades on the axis; with a non-positive value it falls back to linear', () => {
    const log = lineChartSvg([{ name: 'g', x: [0, 1, 2], y: [900, 30, 1.5] }], { title: 'Grad', xLabel: 'iteration', yLabel: 'norm', yScale: 'log' });
    expect(log).toContain('norm (log scale)');
    for (const t of ['1', '10', '100', '1000']) expect(log).toContain(`text-anchor="end">${t}</text>`);
    const lin = lineChartSvg([{ name: 'g', x: [0, 1], y: [0, 5] }], { title: 'Grad', xLabel: 'iteration', yLabel: 'norm', yScale: 'log' });
    expect(lin).not.toContain('(log scale)');
  });

  it('a series without data is named so; a chart without any data still renders', () => {
    const svg = lineChartSvg([{ name: 'empty', x: [0], y: [null] }], { title: 'None', xLabel: 'epoch' });
    expect(svg).toContain('empty (no data)');
    expect(dataPoints(svg, 'empty')).toBe(0);
  });

  it('thins very long series to about maxPoints drawn points, keeping the last', () => {
    const n = 10_001;
    const xs = Array.from({ length: n }, (_, i) => i);
    const svg = lineChartSvg([{ name: 's', x: xs, y: xs.map((i) => Math.sin(i / 100)) }], { title: 'Long', xLabel: 'iteration', maxPoints: 1000 });
    expect(dataPoints(svg, 's')).toBe(n);
    const drawn = drawnPoints(svg, 's')[0]!;
    expect(drawn).toBeGreaterThan(900);
    expect(drawn).toBeLessThanOrEqual(1001);
  });

  it('handles 10^5 points per series (no spread into Math.min)', () => {
    const n = 100_000;
    const xs = Array.from({ length: n }, (_, i) => i);
    const svg = lineChartSvg([{ name: 'a', x: xs, y: xs.map((i) => i % 7) }, { name: 'b', x: xs, y: xs.map((i) => -i) }], { title: 'Big', xLabel: 'iteration' });
    expect(dataPoints(svg, 'b')).toBe(n);
    expect(drawnPoints(svg, 'b')[0]).toBeLessThanOrEqual(2001);
  });

  it('refuses series whose x and y lengths differ, naming the series', () => {
    expect(() => lineChartSvg([{ name: 'bad', x: [0, 1], y: [1] }], { title: 't', xLabel: 'x' })).toThrow(/'bad': 2 x values for 1 y values/);
  });

  it('has no XML namespace inline (no http reference in the page) and one when standalone', () => {
    const series = [{ name: 'a', x: [0, 1], y: [0, 1] }];
    expect(lineChartSvg(series, { title: 't', xLabel: 'x' })).not.toMatch(/https?:\/\//);
    expect(lineChartSvg(series, { title: 't', xLabel: 'x', standalone: true })).toContain('xmlns="http://www.w3.org/2000/svg"');
  });
});

describe('axis ticks', () => {
  it('linear ticks are nice and cover the data', () => {
    expect(linearTicks(0.13, 0.87).ticks).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(linearTicks(0, 29, 6, true).ticks).toEqual([0, 5, 10, 15, 20, 25, 30]);
    // integer axes never step by less than 1
    expect(linearTicks(1, 2, 6, true).ticks).toEqual([1, 2]);
    // a constant pads around its value
    const c = linearTicks(0.04, 0.04);
    expect(c.min).toBeLessThan(0.04);
    expect(c.max).toBeGreaterThan(0.04);
  });
  it('log ticks are decades (with 2 and 5 over a short range)', () => {
    expect(logTicks(1.5, 900).ticks).toEqual([1, 10, 100, 1000]);
    expect(logTicks(3, 40).ticks).toEqual([2, 5, 10, 20, 50]);
  });
  it('tick labels: fixed decimals from the step, exponent form for tiny or huge values', () => {
    expect(formatTick(0.2, 0.2)).toBe('0.2');
    expect(formatTick(10, 5)).toBe('10');
    expect(formatTick(0.9925, 0.0025)).toBe('0.9925');
    expect(formatTick(3e-4, 1e-4)).toBe('3e-4');
    expect(formatTick(2e5, 1e5)).toBe('2e5');
    expect(formatTick(0, 1e-4)).toBe('0');
  });
  it('one form per axis: a learning rate around 1e-3 reads in exponent form throughout', () => {
    expect(formatTicks(linearTicks(0.0009, 0.0011).ticks)).toEqual(['9e-4', '9.5e-4', '1e-3', '1.05e-3', '1.1e-3']);
    expect(formatTicks([0, 0.5, 1, 1.5])).toEqual(['0', '0.5', '1.0', '1.5']);
    expect(formatTicks([1, 10, 100], true)).toEqual(['1', '10', '100']);
  });
});

describe('planCharts', () => {
  it('lists fields outside the known groups that never change instead of drawing them flat', () => {
    const recs = [0, 1, 2].map((e) => ({ epoch: e, trainLoss: 1 - e / 10, trainEntries: 776, skippedBatches: 0, lr: 1e-3, oddity: e }));
    const { charts, constants } = planCharts(recs);
    expect(charts.map((c) => c.id)).toEqual(['epoch-loss', 'epoch-lr', 'epoch-oddity']);
    expect(constants).toEqual([
      { key: 'trainEntries', value: 776, axis: 'epoch', lines: 3 },
      { key: 'skippedBatches', value: 0, axis: 'epoch', lines: 3 },
    ]);
  });

  it('splits lines by x axis, groups fields by what they measure, flattens nested fields', () => {
    const recs = [
      { kind: 'step', epoch: 0, step: 1, loss: 1, softDice: 0.2, lr: 5e-3, imagesPerS: 8 },
      { kind: 'step', epoch: 0, step: 2, loss: 0.9, softDice: 0.3, lr: 5e-3, imagesPerS: 8 },
      { kind: 'epoch', epoch: 0, step: 2, trainLoss: 0.95, valDice: { heart: 0.7, lungs: 0.8 }, valDiceAvg: 0.75, seconds: 30 },
    ];
    expect(recs.map(xAxisOf)).toEqual(['step', 'step', 'epoch']);
    expect([...numericFields(recs[2]!).keys()]).toEqual(['trainLoss', 'valDice/heart', 'valDice/lungs', 'valDiceAvg', 'seconds']);
    const { charts, constants } = planCharts(recs);
    const ids = charts.map((c) => c.id);
    expect(ids).toEqual(['step-loss', 'step-lr', 'step-throughput', 'step-softdice', 'epoch-loss', 'epoch-scores', 'epoch-seconds']);
    expect(constants).toEqual([]);
    const scores = charts.find((c) => c.id === 'epoch-scores')!;
    expect(scores.series.map((s) => s.name)).toEqual(['valDice/heart', 'valDice/lungs', 'valDiceAvg']);
    // epochs are shown 1-based
    expect(scores.series[0]!.x).toEqual([1]);
    expect(charts[0]!.title).toBe('Loss terms (per step)');
  });

  it('pretraining: ln K on the loss and entropy charts, 1.0 = uniform on the collapse chart, grad norms on a log scale', () => {
    const recs = [
      { iteration: 0, total_loss: 13, teacher_entropy: 7, teacher_entropy_ratio: 0.9, grad_norm_backbone: 900, ms_augment: 600 },
      { iteration: 1, total_loss: 12, teacher_entropy: 7.5, teacher_entropy_ratio: 0.98, grad_norm_backbone: 90, ms_augment: 500 },
      { iteration: 1, probe_knn_macro_auroc: 0.6, probe_seconds: 30 },
    ];
    const { charts } = planCharts(recs, { prototypes: 2048 });
    const by = (id: string) => charts.find((c) => c.id === id)!;
    expect(by('iteration-loss').refLines[0]!.y).toBeCloseTo(Math.log(2048), 12);
    expect(by('iteration-entropy').refLines[0]!.y).toBeCloseTo(Math.log(2048), 12);
    expect(by('iteration-collapse').refLines.map((r) => r.y)).toEqual([1, 0.05]);
    expect(by('iteration-grad').yScale).toBe('log');
    expect(by('iteration-scores').series[0]!.x).toEqual([1]);
    expect(by('iteration-timing').series[0]!.name).toBe('ms_augment');
    expect(by('iteration-seconds').series[0]!.name).toBe('probe_seconds');
  });
});
