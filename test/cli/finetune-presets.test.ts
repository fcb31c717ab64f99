/**
 * Downstream classification presets carry the mode, the label type and the full fine-tuning values (spec §5.1),
 * and the command line wins over them; full-mode options parse without loading LibTorch.
 */
import { describe, expect, it } from 'vitest';
import { parseCli } from '../../src/cli/parser.js';

const base = ['--root', 'r', '--weights', 'w', '--out', 'o'];

describe('finetune presets and full-mode options', () => {
  it('every classification preset is a linear run with the recipe’s full-mode values', () => {
    for (const name of ['chexpert', 'nih', 'rsna', 'vindr']) {
      const a = parseCli(['finetune', '--config', name, ...base]);
      expect(a.mode, name).toBe('linear');
      expect(a['label-type'], name).toBe(name === 'rsna' ? 'binary' : 'multilabel');
      // spec §5.1: head lr 5e-5, backbone lr 5e-7, batch 10, no decay, constant lr, clip 1.0, seed 7479.
      expect([a.lr, a['backbone-lr'], a['head-batch-size'], a['weight-decay'], a['layer-decay'], a.schedule, a['warmup-epochs'], a['clip-grad'], a['train-seed']], name).toEqual([
        0.00005, 0.0000005, 10, 0, 1, 'constant', 0, 1, 7479,
      ]);
    }
    const p = parseCli(['finetune', '--config', 'phantom', ...base, '--mode', 'full', '--layer-decay', '0.5']);
    expect([p.mode, p['backbone-lr'], p['layer-decay'], p.lr]).toEqual(['full', 0.0001, 0.5, 0.001]);
  });

  it('full-mode defaults and choices', () => {
    const a = parseCli(['finetune', '--classes', 'A', ...base, '--mode', 'full']);
    expect([a['backbone-lr'], a['layer-decay'], a['patch-embed-lr-mult'], a['select-best'], a['label-type'], a.force, a.precision]).toEqual([
      5e-7, 1, 1, 'valAuroc', 'multilabel', false, undefined,
    ]);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--mode', 'partial'])).toThrow(/mode.*partial|partial.*mode/s);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--label-type', 'ordinal'])).toThrow(/ordinal/);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--select-best', 'valF1'])).toThrow(/valF1/);
    expect(() => parseCli(['finetune', '--classes', 'A', ...base, '--schedule', 'step'])).toThrow(/step/);
  });
});
