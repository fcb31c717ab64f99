/**
 * RadGraph reward against radgraph 0.1.18's own rewards.py on hand-written annotations (test/fixtures/radgraph: the
 * inputs, the expected values and the scripts that produced them), plus hand-computed sets and the errors for
 * malformed annotation JSON.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  pairRadGraph,
  parseRadGraphAnnotations,
  radgraphPairReward,
  radgraphReward,
  readRadGraphFile,
  type RadGraphAnnotation,
} from '../../src/eval/text/radgraph.js';
import { repoRoot } from './golden.js';

const DIR = path.join(repoRoot, 'test', 'fixtures', 'radgraph');
const TOL = 1e-15;

describe('radgraphReward = radgraph 0.1.18 rewards.py (test/fixtures/radgraph)', () => {
  it('every pair and the corpus means, all three levels', async () => {
    const expected = JSON.parse(await readFile(path.join(DIR, 'expected.json'), 'utf8')) as {
      ids: string[];
      per_pair: Record<string, { simple: number; partial: number; complete: number }>;
      mean: { simple: number; partial: number; complete: number };
    };
    const hyps = await readRadGraphFile(path.join(DIR, 'hyps.json'));
    const refs = await readRadGraphFile(path.join(DIR, 'refs.json'));
    const pairs = pairRadGraph(hyps, refs);
    expect(pairs.ids).toEqual(expected.ids);
    const r = radgraphReward(pairs.hyps, pairs.refs);
    pairs.ids.forEach((id, i) => {
      for (const level of ['simple', 'partial', 'complete'] as const) {
        expect(Math.abs(r.perPair[i]![level] - expected.per_pair[id]![level]), `pair ${id} ${level}`).toBeLessThanOrEqual(TOL);
      }
    });
    for (const level of ['simple', 'partial', 'complete'] as const) expect(Math.abs(r[level] - expected.mean[level]), level).toBeLessThanOrEqual(TOL);
    // The fixture exercises the edge rules: some pairs score 0 on every level and still count in the mean.
    expect(r.perPair.filter((p) => p.simple === 0).length).toBeGreaterThanOrEqual(4);
  });
});

const ent = (tokens: string, label: string, relations: [string, string][] = []) => ({ tokens, label, relations });
const ann = (text: string, list: ReturnType<typeof ent>[]): RadGraphAnnotation => ({
  text,
  entities: Object.fromEntries(list.map((e, i) => [String(i + 1), e])),
});

describe('radgraph reward: hand-computed', () => {
  const O = 'Observation::definitely present';
  const A = 'Anatomy::definitely present';
  it('the three levels differ as the item sets do', () => {
    const ref = ann('effusion left', [ent('effusion', O, [['located_at', '2']]), ent('left', A)]);
    const hyp = ann('Effusion left', [ent('Effusion', O, [['located_at', '2']]), ent('left', A)]);
    // simple: {(Effusion,O),(left,A)} vs {(effusion,O),(left,A)}: 1 common → P = R = 1/2 → F1 1/2
    // partial: same with True on the first: 1/2; complete: (effusion,O,located_at,left) lower-cased matches → 1
    expect(radgraphPairReward(hyp, ref)).toEqual({ simple: 0.5, partial: 0.5, complete: 1 });
  });
  it('empty text or no entities on a side: 0, counted in the mean', () => {
    const a = ann('edema', [ent('edema', O)]);
    expect(radgraphPairReward({ ...a, text: '' }, a)).toEqual({ simple: 0, partial: 0, complete: 0 });
    expect(radgraphPairReward(ann('x', []), a)).toEqual({ simple: 0, partial: 0, complete: 0 });
    const r = radgraphReward([a, ann('', [])], [a, a]);
    expect(r.simple).toBe(0.5);
    expect(() => radgraphReward([a], [])).toThrow(/1 hypotheses but 0 references/);
  });
});

describe('radgraph annotations: errors name the file, report and key', () => {
  const bad = (json: unknown) => () => parseRadGraphAnnotations(json, 'hyp.json');
  it('malformed annotations', () => {
    expect(bad(3)).toThrow(/hyp\.json: expected RadGraph annotations: .* found number/);
    expect(bad({ r1: { entities: {} } })).toThrow(/hyp\.json: report 'r1', key 'text': expected the report text \(a string\), found nothing/);
    expect(bad({ r1: { text: 'a', entities: [] } })).toThrow(/report 'r1', key 'entities': expected an object of entities keyed by id, found an array/);
    expect(bad({ r1: { text: 'a', entities: { 1: { tokens: 'a', label: 'L' } } } })).toThrow(/report 'r1', key 'entities\.1\.relations': expected an array/);
    expect(bad({ r1: { text: 'a', entities: { 1: { tokens: 2, label: 'L', relations: [] } } } })).toThrow(/key 'entities\.1\.tokens': expected a string, found number 2/);
    expect(bad({ r1: { text: 'a', entities: { 1: { tokens: 'a', label: 'L', relations: [['modify', '7']] } } } })).toThrow(
      /key 'entities\.1\.relations\[0\]': the target entity '7' does not exist \(entities: 1\)/,
    );
    expect(bad([{ text: 'a', entities: { 1: { tokens: 'a', label: 'L', relations: [['modify']] } } }])).toThrow(/report '0', key 'entities\.1\.relations\[0\]': expected a \[type, target id\] pair/);
  });
  it('invalid JSON and missing ids', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-rg-'));
    try {
      const f = path.join(dir, 'h.json');
      await writeFile(f, '{"0": ');
      await expect(readRadGraphFile(f)).rejects.toThrow(/h\.json: not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const a = ann('a', []);
    expect(() => pairRadGraph(new Map([['1', a]]), new Map([['1', a], ['2', a]]), { hyp: 'h.json', ref: 'r.json' })).toThrow(
      /h\.json: 1 report id\(s\) of r\.json have no annotation here: 2/,
    );
  });
});
