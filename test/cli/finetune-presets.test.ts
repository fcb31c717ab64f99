/**
 * Downstream classification presets carry the mode, the label type and the full fine-tuning values (docs/recipe.md §5.1),
 * and the command line wins over them; full-mode options parse without loading LibTorch; `tensorboard` (every
 * preset, default true) parses from a file and from --[no-]tensorboard.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCli } from '../../src/cli/parser.js';
import { CLASSIFICATION, SEGMENTATION } from '../../src/config/downstream.js';
import { repoRoot } from '../unit/golden.js';

const base = ['--root', 'r', '--weights', 'w', '--out', 'o'];

describe('finetune presets and full-mode options', () => {
  it('every classification preset is a linear run with the recipe’s full-mode values', () => {
    for (const name of ['chexpert', 'nih', 'rsna', 'vindr']) {
      const a = parseCli(['finetune', '--config', name, ...base]);
      expect(a.mode, name).toBe('linear');
      expect(a['label-type'], name).toBe(name === 'rsna' ? 'binary' : 'multilabel');
      // docs/recipe.md §5.1: head lr 5e-5, backbone lr 5e-7, batch 10, no decay, constant lr, clip 1.0, seed 7479.
      expect([a.lr, a['backbone-lr'], a['head-batch-size'], a['weight-decay'], a['layer-decay'], a.schedule, a['warmup-epochs'], a['clip-grad'], a['train-seed']], name).toEqual([
        0.00005, 0.0000005, 10, 0, 1, 'constant', 0, 1, 7479,
      ]);
    }
    const p = parseCli(['finetune', '--config', 'phantom', ...base, '--mode', 'full', '--layer-decay', '0.5']);
    expect([p.mode, p['backbone-lr'], p['layer-decay'], p.lr]).toEqual(['full', 0.0001, 0.5, 0.001]);
  });

  it('full-mode defaults come from the one table (the parser declares none) and choices are checked', () => {
    const a = parseCli(['finetune', '--classes', 'A', ...base, '--mode', 'full']);
    // Not given = undefined: the library fills it from configs/downstream/defaults.json.
    expect([a['backbone-lr'], a['layer-decay'], a['patch-embed-lr-mult'], a['select-best'], a.epochs, a.lr, a['batch-size'], a['label-type'], a.force, a.precision]).toEqual([
      undefined, undefined, undefined, undefined, undefined, undefined, undefined, 'multilabel', false, undefined,
    ]);
    // The table holds the recipe (docs/recipe.md §5.1 and §5.2), and --help --show-hidden prints it.
    expect(CLASSIFICATION).toMatchObject({ lr: 5e-5, backboneLr: 5e-7, headBatchSize: 10, weightDecay: 0, layerwiseDecay: 1, schedule: 'constant', clipGrad: 1, seed: 7479, epochs: 100, clsLayers: 4, avgpool: true, cropScale: [0.08, 1] });
    expect(SEGMENTATION).toMatchObject({ epochs: 5, lr: 5e-3, batchSize: 64 });
    const help = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'finetune', '--help', '--show-hidden'], { encoding: 'utf8' }).stdout;
    expect(help).toMatch(/full: backbone learning rate before layer-wise decay \(default 5e-7;\s+report 0\.0001\)/);
    expect(help).toMatch(/Head training epochs \(default 100; segmentation 5\)/);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--mode', 'partial'])).toThrow(/mode.*partial|partial.*mode/s);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--label-type', 'ordinal'])).toThrow(/ordinal/);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--select-best', 'valF1'])).toThrow(/valF1/);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--schedule', 'step'])).toThrow(/step/);
  });

  it('tensorboard: on by default (the table), in every preset, off with tensorboard: false or --no-tensorboard', async () => {
    expect([CLASSIFICATION.tensorboard, SEGMENTATION.tensorboard]).toEqual([true, true]);
    expect(parseCli(['finetune', '--classes', 'A', ...base]).tensorboard).toBeUndefined();
    for (const name of ['chexpert', 'nih', 'rsna', 'vindr', 'phantom', 'chexmask', 'phantom_seg']) {
      expect(parseCli(['finetune', '--config', name, ...base]).tensorboard, name).toBe(true);
      expect(parseCli(['finetune', '--config', name, ...base, '--no-tensorboard']).tensorboard, name).toBe(false);
    }
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-presets-'));
    try {
      const file = path.join(dir, 'quiet-probe.yaml');
      await writeFile(file, 'classes: A\ntensorboard: false\n');
      expect(parseCli(['finetune', '--config', file, ...base]).tensorboard).toBe(false);
      expect(parseCli(['finetune', '--config', file, ...base, '--tensorboard']).tensorboard).toBe(true);
      // evaluate takes the same file and leaves the training-only key out.
      expect(parseCli(['evaluate', '--config', file, ...base, '--head', 'h']).tensorboard).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const help = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'finetune', '--help', '--show-hidden'], { encoding: 'utf8' }).stdout;
    expect(help).toMatch(/--tensorboard +TensorBoard event files beside metrics\.jsonl \(--no-tensorboard: none;[^[]*\(default true\) +\[boolean\]/);
  });
});
