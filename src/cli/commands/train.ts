/** `cxformer train`: pretraining with a progress bar (TTY) or plain lines, Ctrl-C = checkpoint and stop. */
import { type Args, formatDuration, onInterrupt, splitPositionals } from './common.js';

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
  const tty = process.stderr.isTTY && !quiet;
  const interrupt = onInterrupt(() => process.stderr.write('\ninterrupt: finishing the current step, then writing a checkpoint (Ctrl-C again to quit at once)\n'));
  let lastLine = 0;
  try {
    const res = await train({
      configs,
      overrides,
      force: Boolean(a.force),
      signal: interrupt.signal,
      onEvent: (e) => {
        if (quiet) return;
        if (e.kind === 'log') process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${e.message}\n`);
        else if (e.kind === 'start') process.stderr.write(`train: iterations ${e.iteration}..${(e.total ?? 0) - 1}\n`);
        else if (e.kind === 'step' && e.record) {
          const r = e.record;
          const it = (e.iteration ?? 0) + 1;
          const total = e.total ?? 0;
          const msg = `[${it}/${total}] loss ${r.total_loss.toFixed(4)} (dino ${(r.dino_local_crops_loss + r.dino_global_crops_loss).toFixed(3)}, ibot ${r.ibot_loss.toFixed(3)}, koleo ${r.koleo_loss.toFixed(3)}, H/lnK ${r.teacher_entropy_ratio.toFixed(2)}) lr ${r.lr.toExponential(2)} ${r.it_per_s.toFixed(2)} it/s ${r.images_per_s.toFixed(1)} img/s ETA ${formatDuration(e.etaSeconds ?? NaN)}`;
          if (tty) {
            const width = 20;
            const fill = Math.round((it / Math.max(1, total)) * width);
            process.stderr.write(`\r\x1b[2K${'█'.repeat(fill)}${'░'.repeat(width - fill)} ${msg}`);
          } else if (Date.now() - lastLine > 2000 || it === total) {
            lastLine = Date.now();
            process.stderr.write(`${msg}\n`);
          }
        } else if (e.kind === 'checkpoint') process.stderr.write(`${tty ? '\r\x1b[2K' : ''}checkpoint: ${e.message}\n`);
      },
    });
    if (tty) process.stderr.write('\n');
    if (res.interrupted) {
      if (res.rank === 0) process.stderr.write(`train: interrupted after iteration ${res.lastIteration}; re-run the same command to resume\n`);
      return 130;
    }
    // The run report page (report.html: curves, probes, timings, paths); a failure only warns.
    if (res.rank === 0) await (await import('./report.js')).reportAtEnd(res.output, (m) => (quiet ? undefined : process.stderr.write(`${m}\n`)));
    if (res.rank === 0) process.stderr.write(`train: done (${res.output}); exported teacher: ${res.exported ?? 'n/a'}\n`);
    return 0;
  } finally {
    interrupt.dispose();
  }
}
