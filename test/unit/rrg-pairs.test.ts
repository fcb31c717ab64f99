import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readReportPairs } from '../../src/rrg/pairs.js';
import { metricCard, parseProtocol, phantomFindingMetrics, PROTOCOLS, protocolMetrics } from '../../src/rrg/protocol.js';

let root = '';
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cxf-rrg-pairs-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const f = path.join(root, name);
  await writeFile(f, text);
  return f;
}

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('readReportPairs', () => {
  it('joins JSON Lines predictions with a references CSV by id, in the predictions order', async () => {
    const preds = await file('p1.jsonl', jsonl([{ id: 'images/b.png', generated: 'No pneumothorax.' }, { id: 'images/a.png', generated: '' }]));
    const refs = await file('r1.csv', 'Path,Findings\nimages/a.png,The heart is enlarged.\nimages/b.png,No pneumothorax.\nimages/c.png,Unused.\n');
    const { pairs, summary } = await readReportPairs(preds, { references: refs });
    expect(pairs).toEqual([
      { id: 'images/b.png', hypothesis: 'No pneumothorax.', references: ['No pneumothorax.'] },
      { id: 'images/a.png', hypothesis: '', references: ['The heart is enlarged.'] },
    ]);
    expect(summary.pairs).toBe(2);
    expect(summary.unusedReferences).toBe(1);
    expect(summary.emptyHypotheses).toBe(1);
  });

  it('reads references and patients from the predictions themselves, integer ids and several references', async () => {
    const preds = await file('p2.jsonl', jsonl([{ study_id: 17, prediction: 'x', reference: ['a', 'b'], patient: 'p1' }, { study_id: 18, prediction: 'y', reference: 'c' }]));
    const { pairs } = await readReportPairs(preds);
    expect(pairs).toEqual([
      { id: '17', hypothesis: 'x', references: ['a', 'b'], patient: 'p1' },
      { id: '18', hypothesis: 'y', references: ['c'] },
    ]);
  });

  it('reads CSV predictions with chosen columns', async () => {
    const preds = await file('p3.csv', 'key,text,reference\nk1,"Small, right effusion.",Effusion.\n');
    const { pairs } = await readReportPairs(preds, { idColumn: 'key', column: 'text' });
    expect(pairs).toEqual([{ id: 'k1', hypothesis: 'Small, right effusion.', references: ['Effusion.'] }]);
  });

  it('names the file, line and key of bad input', async () => {
    const bad = await file('bad.jsonl', jsonl([{ id: 'a', generated: 'x', reference: 'y' }]) + '{"id": "b", "generated": 3}\n');
    await expect(readReportPairs(bad)).rejects.toThrow(/bad\.jsonl: line 2.*'generated' must be a string, found 3/);
    const noId = await file('noid.jsonl', jsonl([{ name: 'a', generated: 'x' }]));
    await expect(readReportPairs(noId)).rejects.toThrow(/line 1.*no id: expected one of the keys 'id', 'Path', 'image', 'study_id', found 'name', 'generated'/);
    const notJson = await file('nj.jsonl', '{"id": "a", \n');
    await expect(readReportPairs(notJson)).rejects.toThrow(/nj\.jsonl: line 1.*not a JSON object per line/);
    const dup = await file('dup.jsonl', jsonl([{ id: 'a', generated: 'x', reference: 'y' }, { id: 'a', generated: 'z', reference: 'y' }]));
    await expect(readReportPairs(dup)).rejects.toThrow(/dup\.jsonl: line 2.*duplicate id 'a' \(first on line 1\)/);
    const noCol = await file('nocol.csv', 'Path,Text\na,b\n');
    await expect(readReportPairs(noCol)).rejects.toThrow(/nocol\.csv: line 1.*no generated text column: expected one of 'generated', 'hypothesis', 'prediction', 'Findings'; the columns found are: 'Path', 'Text'/);
  });

  it('lists predictions without a reference and refuses empty references', async () => {
    const preds = await file('p4.jsonl', jsonl([{ id: 'a', generated: 'x' }, { id: 'b', generated: 'y' }, { id: 'c', generated: 'z' }]));
    const refs = await file('r4.csv', 'Path,Findings\nb,ok\n');
    await expect(readReportPairs(preds, { references: refs })).rejects.toThrow(/2 of 3 predictions have no reference in .*r4\.csv: 'a', 'c'/);
    await expect(readReportPairs(preds)).rejects.toThrow(/3 of 3 predictions have no reference .*pass --references FILE/);
    const refsEmpty = await file('r5.csv', 'Path,Findings\na,x\nb, \nc,z\n');
    await expect(readReportPairs(preds, { references: refsEmpty })).rejects.toThrow(/r5\.csv: line 3.*the reference of 'b' is empty/);
    const empty = await file('empty.jsonl', '\n\n');
    await expect(readReportPairs(empty)).rejects.toThrow(/no predictions/);
  });
});

describe('protocols', () => {
  it('every preset has unique keys, and all is the union of the others', () => {
    const union = new Set<string>();
    for (const p of PROTOCOLS) {
      const keys = protocolMetrics(p).map((m) => m.key);
      expect(new Set(keys).size, p).toBe(keys.length);
      if (p !== 'all') keys.forEach((k) => union.add(k));
    }
    expect(new Set(protocolMetrics('all').map((m) => m.key))).toEqual(union);
  });

  it("cxformer reads CXformer's table as LLaVA-Rad's script: sacrebleu BLEU-4, rouge-score without stemming, macro F1 with uncertain negative", () => {
    const m = Object.fromEntries(protocolMetrics('cxformer').map((s) => [s.key, s]));
    expect(m.bleu4).toMatchObject({ kind: 'bleu-sacre', order: 4, scale: 100, sacre: { tokenize: '13a', lowercase: false, smooth: 'exp' } });
    expect(m.rougeL).toMatchObject({ kind: 'rouge-score', stemmer: false, scale: 100 });
    expect(m.f1_14_macro).toMatchObject({ kind: 'label-f1', labels: '14', averaging: 'macro', uncertain: 'negative' });
    expect(m.f1_5_macro).toMatchObject({ labels: '5', averaging: 'macro' });
    expect(m.rg_er).toMatchObject({ kind: 'radgraph', level: 'partial' });
  });

  it('llava-rad has the twelve CheXbert variants of run.py; r2gen works on cleaned text at scale 1', () => {
    const ce = protocolMetrics('llava-rad').filter((m) => m.kind === 'label-f1');
    expect(ce.map((m) => m.name).sort()).toEqual(
      ['Micro-F1-14', 'Micro-F1-5', 'Micro-F1-4', 'Macro-F1-14', 'Macro-F1-5', 'Macro-F1-4', 'Micro-F1-14+', 'Micro-F1-5+', 'Micro-F1-4+', 'Macro-F1-14+', 'Macro-F1-5+', 'Macro-F1-4+'].sort(),
    );
    for (const m of protocolMetrics('r2gen')) {
      expect(m.scale, m.key).toBe(1);
      if (m.kind !== 'label-f1') expect(m.text, m.key).toBe('r2gen-clean');
    }
    expect(phantomFindingMetrics(100).map((m) => m.key)).toEqual(['f1_findings_micro', 'f1_findings_macro']);
  });

  it('cards name the implementation, tokenisation, case and policy; unknown protocols are refused', () => {
    const [bleu] = protocolMetrics('cxformer').filter((m) => m.key === 'bleu4');
    expect(metricCard(bleu!)).toMatchObject({ tokenisation: 'sacrebleu 13a (mteval-v13a)', case: 'case-sensitive', scale: '0-100', smoothing: 'exp' });
    const [f1] = protocolMetrics('llava-rad').filter((m) => m.key === 'f1_14_micro_plus');
    expect(metricCard(f1!, 'phantom 1.0.0')).toMatchObject({ uncertain: 'uncertain counted positive (rrg+)', labeler: 'phantom 1.0.0' });
    expect(() => parseProtocol('coco')).toThrow(/unknown protocol 'coco': expected one of cxformer, llava-rad, r2gen, all/);
  });
});
