/**
 * The captioner's acceptance on phantoms (issue #15), from the CLI: ≥ 1,000 training and ≥ 300 test phantoms at
 * 224 px, a FROZEN backbone — here the tiny random ViT of the golden fixtures (3 blocks, width 96), which takes seconds
 * where a pretrained CXformer would take minutes; its memory still separates the findings — and the phantom preset's
 * decoder. The label micro F1 over the phantom findings (the exact phantom labeler on generated and reference text)
 * must reach 0.30 and match or beat the 1-nearest-neighbour report baseline on the same memories, and ROUGE-L must
 * beat the most frequent training report, which already scores high on templated phantom text (measured numbers in
 * BENCHMARKS.md, "Report captioner on phantoms").
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { phantomFolder } from '../helpers/phantom-folder.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
// ≈ 1,150 train / 170 valid / 370 test images (patient-level splits).
const ph = phantomFolder('cxf-report-phantom-', { n: 1700, seed: 3, size: 224, splitFractions: { train: 0.68, valid: 0.1, test: 0.22 } });

describe('report captioner on phantoms (frozen backbone)', () => {
  it('beats 0.30 label micro F1, the 1-NN report baseline, and the constant report on ROUGE-L', { timeout: 900_000 }, async () => {
    const out = path.join(ph.tmp, 'run');
    const r = spawnSync(process.execPath, [MAIN, 'finetune', '--config', 'phantom_report', '--root', ph.data, '--weights', TINY, '--out', out, '--epochs', '10', '--val-every', '5', '--max-train', '1000', '--bootstrap', '50', '--threads', '1', '-q'], {
      encoding: 'utf8',
      timeout: 880_000,
      env: { ...process.env, CXFORMER_REPORT: '0' },
    });
    expect(r.status, r.stderr).toBe(0);
    const b = JSON.parse(await readFile(path.join(out, 'baselines.json'), 'utf8'));
    const rep = JSON.parse(await readFile(path.join(out, 'eval', 'report.json'), 'utf8'));
    expect(rep.pairs).toBeGreaterThanOrEqual(300);
    process.stderr.write(`report-phantom: ${JSON.stringify(b)}\n`);
    expect(b.model.f1Micro).toBeGreaterThanOrEqual(30);
    expect(b.model.f1Micro).toBeGreaterThanOrEqual(b.nearest_neighbour_report.f1Micro);
    expect(b.model.rougeL).toBeGreaterThan(b.most_frequent_report.rougeL);
    expect(b.most_frequent_report.f1Micro).toBe(0);
  });
});
