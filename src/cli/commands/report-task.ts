/**
 * `cxformer finetune --task report`: the report captioner on a frozen backbone, or with `--mode full` on an encoder
 * trained end to end (src/rrg/train.ts); re-run the same command to resume after an interruption.
 */
import type { ReportSourceSpec } from '../../rrg/data.js';
import { parseTokenizerSpec } from '../../rrg/native.js';
import type { ProtocolName } from '../../rrg/protocol.js';
import { DECODER_PRESETS, finetuneReport, type ReportTrainOptions } from '../../rrg/train.js';
import { type Args, onInterrupt, preprocessOverrides, progress, splitPositionals } from './common.js';
import { reportAtEnd } from './report.js';

export function dataSpec(a: Args): ReportSourceSpec {
  const root = String(a.root);
  switch (String(a['report-data'] ?? 'phantom')) {
    case 'mimic':
      return { kind: 'mimic', root, ...(a.reports !== undefined ? { reportsDir: String(a.reports) } : {}) };
    case 'r2gen':
      return { kind: 'r2gen', root, ...(a.annotation !== undefined ? { annotation: String(a.annotation) } : {}) };
    case 'iu-xray':
      return { kind: 'iu-xray', root, ...(a.annotation !== undefined ? { annotation: String(a.annotation) } : {}) };
    default:
      return { kind: 'phantom', root };
  }
}

/** --decoder PRESET [--dropout P]: the preset, or its sizes with another dropout. */
function decoderOf(a: Args): ReportTrainOptions['decoder'] {
  const name = (a.decoder ?? 'phantom') as keyof typeof DECODER_PRESETS; // not 'llm': run() sent it elsewhere
  return a.dropout === undefined ? name : { ...DECODER_PRESETS[name], dropout: Number(a.dropout) };
}

export async function run(a: Args): Promise<number> {
  // --decoder llm: the LLaVA recipe (an HF causal LM behind a projector).
  if (a.decoder === 'llm') return (await import('./llava-task.js')).run(a);
  const quiet = Boolean(a.quiet);
  const bar = progress(quiet);
  const ctl = new AbortController();
  const interrupt = onInterrupt(() => {
    bar.done('interrupt: stopping at the next step; re-run the command to resume from the last finished epoch');
    ctl.abort();
  });
  // (a, 'name'): the form test/cli/help.test.ts reads as an option use.
  const num = (a: Args, k: string) => (a[k] === undefined ? undefined : Number(a[k]));
  const { overrides } = splitPositionals(a.overrides);
  try {
    const pre = preprocessOverrides(a);
    const res = await finetuneReport({
      backbone: { weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides, device: String(a.device), ...(a.threads !== undefined ? { threads: Number(a.threads) } : {}) },
      data: dataSpec(a),
      out: String(a.out),
      ...(a.tokenizer !== undefined ? { tokenizer: parseTokenizerSpec(String(a.tokenizer)) } : {}),
      memory: {
        block: num(a, 'memory-block') ?? -1,
        pool: num(a, 'memory-pool') ?? 1,
        ...(num(a, 'batch-size') ? { batchSize: num(a, 'batch-size') } : {}),
        ...(pre && Object.keys(pre).length ? { preprocess: pre } : {}),
        ...(a['memory-cache'] !== undefined ? { cache: Boolean(a['memory-cache']) } : {}),
      },
      ...(a.decoder !== undefined || a.dropout !== undefined ? { decoder: decoderOf(a) } : {}),
      // --mode full: the encoder trained end to end with its own lr (layer-wise decay and patch-embed multiplier).
      ...(a.mode === 'full'
        ? { encoder: { ...(num(a, 'backbone-lr') !== undefined ? { backboneLr: num(a, 'backbone-lr') } : {}), ...(num(a, 'layer-decay') !== undefined ? { layerwiseDecay: num(a, 'layer-decay') } : {}), ...(num(a, 'patch-embed-lr-mult') !== undefined ? { patchEmbedLrMult: num(a, 'patch-embed-lr-mult') } : {}) } }
        : {}),
      ...(num(a, 'epochs') !== undefined ? { epochs: num(a, 'epochs') } : {}),
      ...(num(a, 'head-batch-size') !== undefined ? { batchSize: num(a, 'head-batch-size') } : {}),
      ...(num(a, 'lr') !== undefined ? { lr: num(a, 'lr') } : {}),
      ...(num(a, 'weight-decay') !== undefined ? { weightDecay: num(a, 'weight-decay') } : {}),
      ...(a.labeler !== undefined ? { labeler: String(a.labeler) } : {}),
      ...(a.protocol !== undefined ? { protocol: a.protocol as ProtocolName } : {}),
      ...(num(a, 'bootstrap') !== undefined ? { bootstrap: num(a, 'bootstrap') } : {}),
      ...(num(a, 'train-seed') !== undefined ? { seed: num(a, 'train-seed') } : {}),
      ...(num(a, 'max-train') !== undefined ? { maxTrain: num(a, 'max-train') } : {}),
      ...(num(a, 'val-every') !== undefined ? { valEvery: num(a, 'val-every') } : {}),
      ...(a.tensorboard !== undefined ? { tensorboard: Boolean(a.tensorboard) } : {}),
      force: Boolean(a.force),
      signal: ctl.signal,
      log: (m) => bar.done(m),
      onStep: (r) => bar.update(`finetune: loss ${r.loss.toFixed(4)}, lr ${r.lr.toExponential(2)}, epoch ${r.epoch + 1}/${r.epochs}`, r.epoch * r.stepsPerEpoch + r.stepInEpoch + 1, r.epochs * r.stepsPerEpoch, 'report steps'),
      onProgress: (what, d, t) => bar.update(`finetune: ${what}`, d, t),
    });
    // Data parallel: rank 0 evaluates and writes the outputs; the other ranks are done after training.
    if (res.rank > 0) return 0;
    await reportAtEnd(String(a.out), (msg) => bar.done(msg));
    progress(false).done(`finetune: best epoch ${res.bestEpoch}; ${res.files.best}, ${res.files.predictions}, ${res.files.report}`);
    return 0;
  } finally {
    interrupt.dispose();
  }
}
