/**
 * `cxformer train`: pretraining with the shared progress line (common.ts `progress`: rewritten in place on a
 * terminal, plain lines otherwise), Ctrl-C = checkpoint and stop.
 */
import type { TrainEvent } from '../../train/run.js';
import { type Args, onInterrupt, progress, splitPositionals } from './common.js';

export async function run(a: Args): Promise<number> {
  const { overrides } = splitPositionals(a.overrides);
  const configs = a.config === undefined ? [] : ([] as unknown[]).concat(a.config).map(String);
  if (a['print-config']) {
    const { loadPretrainConfig, pretrainConfigToYaml } = await import('../../config/pretrain.js');
    // Printing needs no output folder or weights: required keys left unset print as ??? and are listed.
    const { config, derived, unset } = await loadPretrainConfig({ files: configs, overrides, allowUnset: true });
    process.stdout.write(pretrainConfigToYaml(config));
    if (unset.length) process.stdout.write(`# unset (required to train): ${unset.join(', ')}\n`);
    process.stdout.write(`# derived: ${JSON.stringify({ total_iterations: derived.total_iterations, lr: derived.lr, global_batch_size: derived.global_batch_size })}\n`);
    return 0;
  }
  const { train } = await import('../../train/run.js');
  const quiet = Boolean(a.quiet);
  // The progress line of every long command (common.ts); without a terminal a line every 2 s (a step can take
  // seconds) and the last iteration's.
  const bar = progress({ quiet, lineIntervalMs: 2000, finalLine: true });
  // The interruption notice and the result are printed even with -q (the progress lines are not).
  const say = quiet ? progress() : bar;
  const interrupt = onInterrupt(() => say.done('interrupt: finishing the current step, then writing a checkpoint (Ctrl-C again to quit at once)'));
  try {
    const res = await train({
      configs,
      overrides,
      force: Boolean(a.force),
      signal: interrupt.signal,
      onEvent: (e) => {
        if (e.kind === 'log') bar.done(e.message ?? '');
        else if (e.kind === 'start') {
          bar.done(`train: iterations ${e.iteration}..${(e.total ?? 0) - 1}`);
          // The ETA's clock starts here, at the iterations already done (a resumed run's are not counted).
          bar.update('train: iteration', e.iteration ?? 0, e.total ?? 0, 'train');
        } else if (e.kind === 'step' && e.record) bar.update(stepLine(e.record), (e.iteration ?? 0) + 1, e.total ?? 0, 'train');
        else if (e.kind === 'checkpoint') bar.done(`checkpoint: ${e.message}`);
      },
    });
    if (res.interrupted) {
      if (res.rank === 0) say.done(`train: interrupted after iteration ${res.lastIteration}; re-run the same command to resume`);
      return 130;
    }
    // The run report page (report.html: curves, probes, timings, paths); a failure only warns.
    if (res.rank === 0) await (await import('./report.js')).reportAtEnd(res.output, (m) => bar.done(m));
    if (res.rank === 0) say.done(`train: done (${res.output}); exported teacher: ${res.exported ?? 'n/a'}`);
    return 0;
  } finally {
    interrupt.dispose();
  }
}

/**
 * An iteration's numbers on the progress line, before the count, percentage and ETA that `progress` adds: `train:
 * loss 8.4309 (dino 5.543, ibot 2.818, koleo 0.070, H/lnK 0.97), lr 7.50e-4, 6.89 it/s, 27.5 img/s, iteration 9/12
 * (75 %), 2s elapsed, ETA 0s`.
 */
function stepLine(r: NonNullable<TrainEvent['record']>): string {
  return (
    `train: loss ${r.total_loss.toFixed(4)} (dino ${(r.dino_local_crops_loss + r.dino_global_crops_loss).toFixed(3)}, ibot ${r.ibot_loss.toFixed(3)}, ` +
    `koleo ${r.koleo_loss.toFixed(3)}, H/lnK ${r.teacher_entropy_ratio.toFixed(2)}), lr ${r.lr.toExponential(2)}, ${r.it_per_s.toFixed(2)} it/s, ` +
    `${r.images_per_s.toFixed(1)} img/s, iteration`
  );
}
