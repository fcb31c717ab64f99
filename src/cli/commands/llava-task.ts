/**
 * `cxformer finetune --task report --decoder llm --lm DIR [--stage align,finetune]`: the LLaVA recipe
 * (src/llava/train.ts); re-run the same command to resume after an interruption.
 */
import { PROMPT_FIELDS, type PromptField } from '../../llava/prompt.js';
import { finetuneLlava, type LlavaRunOptions, type LlavaStage } from '../../llava/train.js';
import { CxformerError } from '../../native/load.js';
import type { ProtocolName } from '../../rrg/protocol.js';
import { type Args, onInterrupt, preprocessOverrides, progress, splitPositionals } from './common.js';
import { reportAtEnd } from './report.js';
import { dataSpec } from './report-task.js';

/** `--condition indication,classifier` → the prompt fields (each known, none twice). */
function conditionFields(v: string): PromptField[] {
  const fields = v.split(',').map((f) => f.trim());
  const bad = fields.filter((f) => !(PROMPT_FIELDS as readonly string[]).includes(f));
  if (bad.length || new Set(fields).size !== fields.length) throw new CxformerError('CXF_ARG', `--condition ${v}: expected ${PROMPT_FIELDS.join(', ')} or both, comma-separated, each once`);
  return fields as PromptField[];
}

export async function run(a: Args): Promise<number> {
  const quiet = Boolean(a.quiet);
  const bar = progress(quiet);
  const ctl = new AbortController();
  const interrupt = onInterrupt(() => {
    bar.done('interrupt: stopping at the next step; re-run the command to resume from the last finished epoch');
    ctl.abort();
  });
  const num = (a: Args, k: string) => (a[k] === undefined ? undefined : Number(a[k]));
  const { overrides } = splitPositionals(a.overrides);
  try {
    if (a.lm === undefined) throw new CxformerError('CXF_ARG', 'finetune --decoder llm: give the language model folder with --lm DIR (config.json, model.safetensors, tokenizer.json)');
    const pre = preprocessOverrides(a);
    const rank = num(a, 'lora-rank');
    const lora: LlavaRunOptions['lora'] =
      rank === 0
        ? 'full'
        : { ...(rank !== undefined ? { rank } : {}), ...(num(a, 'lora-alpha') !== undefined ? { alpha: num(a, 'lora-alpha') } : {}), ...(num(a, 'lora-dropout') !== undefined ? { dropout: num(a, 'lora-dropout') } : {}) };
    const res = await finetuneLlava({
      backbone: { weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides, device: String(a.device), ...(a.threads !== undefined ? { threads: Number(a.threads) } : {}) },
      lm: String(a.lm),
      data: dataSpec(a),
      out: String(a.out),
      ...(a.stage !== undefined ? { stages: String(a.stage).split(',').map((s) => s.trim()) as LlavaStage[] } : {}),
      vision: {
        ...(num(a, 'feature-layer') !== undefined ? { featureLayer: num(a, 'feature-layer') } : {}),
        ...(a['visual-tokens'] !== undefined ? { select: a['visual-tokens'] as 'full' | 'default' } : {}),
        ...(num(a, 'memory-pool') !== undefined ? { pool: num(a, 'memory-pool') } : {}),
        ...(a.projector !== undefined ? { projector: String(a.projector) } : {}),
        ...(pre && Object.keys(pre).length ? { preprocess: pre } : {}),
      },
      prompt: {
        ...(a.prompt !== undefined ? { finetune: a.prompt as 'auto' | 'plain' | 'chat' } : {}),
        ...(a.instruction !== undefined ? { instruction: String(a.instruction) } : {}),
        ...(a.condition !== undefined ? { fields: conditionFields(String(a.condition)) } : {}),
        ...(a.classifier !== undefined ? { classifier: String(a.classifier) } : {}),
        ...(num(a, 'max-report-tokens') !== undefined ? { maxReportTokens: num(a, 'max-report-tokens') } : {}),
      },
      ...(Object.keys(lora).length || lora === 'full' ? { lora } : {}),
      ...(num(a, 'epochs') !== undefined ? { epochs: num(a, 'epochs') } : {}),
      ...(num(a, 'head-batch-size') !== undefined ? { batchSize: num(a, 'head-batch-size') } : {}),
      ...(num(a, 'micro-batches') !== undefined ? { microBatches: num(a, 'micro-batches') } : {}),
      ...(num(a, 'lr') !== undefined ? { lr: num(a, 'lr') } : {}),
      ...(num(a, 'lm-lr') !== undefined ? { lmLr: num(a, 'lm-lr') } : {}),
      ...(num(a, 'weight-decay') !== undefined ? { weightDecay: num(a, 'weight-decay') } : {}),
      ...(a.precision !== undefined ? { precision: a.precision as 'f32' | 'bf16' } : {}),
      ...(a.labeler !== undefined ? { labeler: String(a.labeler) } : {}),
      ...(a.protocol !== undefined ? { protocol: a.protocol as ProtocolName } : {}),
      ...(num(a, 'bootstrap') !== undefined ? { bootstrap: num(a, 'bootstrap') } : {}),
      ...(num(a, 'train-seed') !== undefined ? { seed: num(a, 'train-seed') } : {}),
      ...(num(a, 'max-train') !== undefined ? { maxTrain: num(a, 'max-train') } : {}),
      ...(a.tensorboard !== undefined ? { tensorboard: Boolean(a.tensorboard) } : {}),
      force: Boolean(a.force),
      signal: ctl.signal,
      log: (m) => bar.done(m),
      onStep: (r) => bar.update(`${r.stage}: loss ${r.loss.toFixed(4)}, lr ${r.lr.toExponential(2)}, epoch ${r.epoch + 1}/${r.epochs}`, r.epoch * r.stepsPerEpoch + r.stepInEpoch + 1, r.epochs * r.stepsPerEpoch, 'steps'),
      onProgress: (what, d, t) => bar.update(`finetune: ${what}`, d, t),
    });
    if (res.rank > 0) return 0;
    await reportAtEnd(String(a.out), (msg) => bar.done(msg));
    progress(false).done(`finetune: ${res.stages.map((s) => `${s.stage} → ${s.model}`).join('; ')}; ${res.files.predictions}, ${res.files.report}`);
    return 0;
  } finally {
    interrupt.dispose();
  }
}
