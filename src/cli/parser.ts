/**
 * The command-line grammar (yargs), as data: parsing never loads LibTorch and runs nothing, so tests call
 * {@link parseCli} directly and `--help` / argument errors stay fast. src/cli/main.ts dispatches.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';
import yargs, { type Argv } from 'yargs';
import { CLASSIFICATION, LLAVA_INSTRUCTION, LLAVA_STAGE_DEFAULTS, REPORT_ENCODER, SEGMENTATION } from '../config/downstream.js';
import { checkNumericFlags } from './ranges.js';

export const COMMANDS = ['train', 'finetune', 'generate', 'evaluate', 'launch', 'prepare', 'embed', 'info', 'export', 'synth', 'phantom', 'report', 'label'] as const;
export type CommandName = (typeof COMMANDS)[number];

/** A `key=value` argument is a config override (e.g. `model.num_heads=3`), anything else an input. */
export const isOverride = (s: string) => /^[A-Za-z_][\w.]*=/.test(s);

/** Backbone options. `nonfinite`: the command passes --allow-nonfinite on to the weight loader (embed, export). */
function modelOptions(y: Argv, nonfinite = false) {
  y = y
    .option('weights', {
      alias: 'w',
      type: 'string',
      describe: 'HF model folder or .safetensors file (HF or DINOv2 names)',
    })
    .option('arch', {
      type: 'string',
      describe: 'vit_small, vit_base, vit_large or vit_giant2 (alone: random init)',
    })
    .option('device', { type: 'string', default: 'cpu', describe: 'cpu, cuda or cuda:N' })
    .option('threads', { type: 'number', describe: 'LibTorch threads (default: all cores, or $CXFORMER_THREADS)' })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of the random initialisation (no --weights)' });
  if (!nonfinite) return y;
  return y.option('allow-nonfinite', {
    type: 'boolean',
    default: false,
    describe: 'Load weights that hold NaN or infinite values (refused by default, naming the tensors)',
  });
}

function preprocessOptions(y: Argv) {
  return y
    .option('grayscale', { type: 'boolean', describe: 'Convert to 8-bit gray and replicate to 3 channels (default: from preprocessor_config.json, else true)' })
    .option('equalize', { type: 'boolean', describe: 'OpenCV global histogram equalisation (default: from preprocessor_config.json, else true)' })
    .option('resize', { type: 'string', describe: "Shorter side in px, or 'none' (default: from preprocessor_config.json, else 518)" })
    .option('crop', { type: 'string', describe: "Centre crop side in px, HxW, or 'none' (default: from preprocessor_config.json, else 518)" });
}

/** Downstream presets shipped in configs/downstream/ (a name there, or a YAML file path). */
export const DOWNSTREAM_DIR = fileURLToPath(new URL('../../configs/downstream/', import.meta.url));
/** Pretraining presets (configs/pretrain/; default.yaml is the base every run merges over). */
export const PRETRAIN_DIR = fileURLToPath(new URL('../../configs/pretrain/', import.meta.url));

/** Reads a downstream config (YAML mapping of option names to values) for yargs' `.config()`. */
export function loadDownstreamConfig(file: string): Record<string, unknown> {
  let p = file;
  if (!existsSync(p)) {
    const preset = path.join(DOWNSTREAM_DIR, `${path.basename(file).replace(/\.ya?ml$/, '')}.yaml`);
    if (!existsSync(preset)) {
      const names = existsSync(DOWNSTREAM_DIR) ? readdirSync(DOWNSTREAM_DIR).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)) : [];
      throw new Error(`--config ${path.basename(file)}: no such file, and not a preset (${names.join(', ')})`);
    }
    p = preset;
  }
  const v = load(readFileSync(p, 'utf8'));
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`--config ${p}: expected a YAML mapping of option names to values`);
  return v as Record<string, unknown>;
}

function configLoads(file: unknown): boolean {
  if (file === undefined) return true;
  try {
    loadDownstreamConfig(String(file));
    return true;
  } catch {
    return false;
  }
}

/**
 * `evaluate --config <preset>`: a preset is written for `finetune`; evaluate takes its data and preprocessing keys
 * and leaves out the training-only ones (epochs, lr, mode, …; the head file records what evaluation needs).
 * Keys that no command knows still fail when the same file is given to `finetune`.
 */
function evaluateConfigLoader(y: Argv) {
  return (file: string): Record<string, unknown> => {
    // yargs has getOptions() at runtime; its typings leave it out.
    const { key } = (y as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions();
    const known = new Set(Object.keys(key));
    return Object.fromEntries(Object.entries(loadDownstreamConfig(file)).filter(([k]) => known.has(k)));
  };
}

/** Names of the YAML presets in `dir` (configs/downstream/, configs/pretrain/), sorted; `except` left out. */
export function presetNames(dir: string, except: readonly string[] = []): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -5))
    .filter((n) => !except.includes(n))
    .sort();
}

/** Dataset, labels and report options of finetune and evaluate (evaluate: --split; finetune: --batch-size). */
function labelledData(y: Argv, command: 'finetune' | 'evaluate') {
  y = y
    .config('config', `Preset (${presetNames(DOWNSTREAM_DIR).join(', ')}) or a YAML file of options; flags win`, command === 'evaluate' ? evaluateConfigLoader(y) : loadDownstreamConfig)
    .option('dataset', { type: 'string', default: 'csv', describe: 'chexpert, mimic, nih, padchest, brax, vindr, rsna, csv' })
    .option('root', { type: 'string', describe: 'Dataset root folder' })
    .option('manifest', { type: 'string', describe: 'csv: the manifest (relative to --root)' })
    .option('path-column', { type: 'string', default: 'Path', describe: 'csv: image path column' })
    .option('patient-column', { type: 'string', default: 'Patient', describe: 'csv: patient id column' })
    .option('split-column', { type: 'string', default: 'Split', describe: 'csv: split column (train / valid / test)' })
    .option('classes', {
      type: 'string',
      describe:
        command === 'evaluate'
          ? "Class names to report (comma-separated; default: all of the head's)"
          : 'Comma-separated class names (csv: the label columns); classification only',
    })
    .option('views', { type: 'string', describe: 'Keep these views, e.g. PA,AP' })
    .option('uncertain', { choices: ['ones', 'zeros', 'ignore'] as const, describe: 'Uncertain (-1) labels (default: the dataset default)' })
    .option('blank', { choices: ['zero', 'ignore', 'uncertain'] as const, describe: 'Blank labels (default: the dataset default)' })
    .option('bootstrap', { type: 'number', default: CLASSIFICATION.bootstrap, describe: 'Bootstrap resamples for the CIs (0 = none)' });
  y =
    command === 'evaluate'
      ? y.option('split', { type: 'string', describe: 'The split to evaluate (default test)' })
      : y.option('batch-size', { alias: 'b', type: 'number', describe: `Images per forward pass (default ${CLASSIFICATION.batchSize}; segmentation: training batch, ${SEGMENTATION.batchSize})` });
  return y.check((a) => {
      const bad = ((a.overrides as string[] | undefined) ?? []).filter((s) => !isOverride(String(s)));
      if (bad.length) throw new Error(`unexpected argument(s) ${bad.join(' ')}: only key=value backbone overrides are positional`);
      // (A broken --config reports its own error; do not mask it with this one.)
      // (evaluate: the head names its classes.)
      // evaluate --task report scores text files: no dataset, head or backbone.
      if (command === 'evaluate' && a.task === 'report') {
        if (a.predictions === undefined) throw new Error('Missing required argument: predictions (evaluate --task report scores a predictions file)');
        return true;
      }
      if (a.root === undefined) throw new Error('Missing required argument: root');
      if (command === 'evaluate' && a.head === undefined) throw new Error('Missing required argument: head');
      if (command === 'finetune' && a.task !== 'segmentation' && a.task !== 'report' && a.classes === undefined && configLoads(a.config)) throw new Error('Missing required argument: classes');
      if (!a.weights && !a.arch && !(a.task === 'segmentation' && a.head !== undefined)) throw new Error('give --weights <folder|file|run checkpoint>, or --arch <preset> for a random-initialised backbone');
      return true;
  });
}

/** Mask and prediction options of `--task segmentation` (finetune and evaluate; docs/segmentation.md). */
function maskOptions(y: Argv, command: 'finetune' | 'evaluate') {
  y = y
    .option('masks', { type: 'string', describe: 'segmentation: CheXmask-style table in --masks-root (default by source)' })
    .option('masks-source', { choices: ['mimic', 'chexpert', 'nih', 'padchest', 'vindr', 'csv'] as const, describe: 'segmentation: which CheXmask table (default: the dataset, csv for --dataset csv)' })
    .option('masks-root', { type: 'string', describe: 'segmentation: CheXmask folder (default --root)' })
    .option('min-dice-rca', { type: 'number', describe: "segmentation: keep masks with CheXmask's 'Dice RCA (Mean)' >= this" })
    .option('overlays', { type: 'number', describe: 'segmentation: overlay PNGs of a seeded sample of this many images (default 16)' })
    .option('eval-batch-size', { type: 'number', describe: 'segmentation: images per forward pass when predicting (default 8)' });
  if (command === 'finetune') return y;
  return y.option('overlay-ids', { type: 'string', describe: 'segmentation: overlays for these record ids (comma-separated) instead of a sample' });
}

/** Training options of `finetune --task segmentation` (docs/segmentation.md). */
function segTrainOptions(y: Argv) {
  return y
    .option('seg-head', { choices: ['linear', 'progressive'] as const, describe: "segmentation head: linear (CXformer: 1x1 conv on the last block + bilinear) or progressive (several blocks, convolutional upsampling) (default linear)" })
    .option('seg-layers', { type: 'string', describe: 'progressive head: blocks whose patch tokens are used, e.g. --seg-layers=-4,-3,-2,-1 (default: the last 4, or all blocks of a shallower model)' })
    .option('seg-hidden', { type: 'number', describe: 'progressive head: channels after the projection (default 256)' })
    .option('seg-unfreeze', { type: 'boolean', describe: 'segmentation: train the backbone too (default frozen, as docs/recipe.md §5.2)' })
    .option('seg-backbone-lr', { type: 'number', describe: 'segmentation with --seg-unfreeze: backbone lr (default 1e-5)' })
    .option('seg-weight-decay', { type: 'number', describe: 'segmentation: AdamW weight decay (default 1e-4)' })
    .option('seg-warmup-epochs', { type: 'number', describe: 'segmentation: linear warm-up epochs before the cosine (default 0)' })
    .option('seg-hflip', { type: 'number', describe: 'segmentation: horizontal-flip probability, with left/right lung labels swapped (default 0: a flipped PA film puts the heart on the wrong side)' })
    .option('seg-augment', { type: 'boolean', describe: 'segmentation: affine + intensity augmentation (default true)' })
    .option('seg-precision', { choices: ['f32', 'bf16'] as const, describe: 'segmentation: f32, or bf16 autocast (default f32)' })
    .option('seg-max-train', { type: 'number', describe: 'segmentation: use at most this many training images (seeded sample)' });
}

/** Where the options not shown by `--help` are described (`--help --show-hidden` lists them too). */
const MORE = 'More options (hidden above): cxformer <command> --help --show-hidden, or docs/cli.md.';

/**
 * The help layout of a command: `groups` (title → option keys, in order) are shown, every other option of the
 * command is hidden (still accepted; listed by `--help --show-hidden` and docs/cli.md), so that help fits a screen.
 * (`--show-hidden` is read from the raw arguments: yargs 18 ignores it in a command's help.)
 */
function layout(y: Argv, groups: Record<string, string[]>, showAll: boolean): Argv {
  const { key, alias } = (y as unknown as { getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> } }).getOptions();
  const aliases = new Set(Object.values(alias).flat());
  const shown = new Set([...Object.values(groups).flat(), 'help', 'show-hidden', 'version']);
  const hidden = Object.keys(key).filter((k) => !shown.has(k) && !aliases.has(k));
  for (const [title, keys] of Object.entries(groups)) y = y.group(keys, title);
  if (showAll) return hidden.length ? y.group(hidden, 'Advanced:') : y;
  for (const k of hidden) y = y.hide(k);
  return hidden.length ? y.epilogue(MORE) : y;
}

/**
 * An example for `--help`: a `#` comment line, then the command, long ones split with shell line continuations
 * (` \`), so that an example never wraps into a description column and runs as written when pasted.
 */
function examples(y: Argv, list: readonly (readonly [what: string, ...lines: string[]])[]): Argv {
  for (const [what, ...lines] of list) y = y.example(`# ${what}\n${lines.join(' \\\n    ')}`, '');
  return y;
}

/** Options whose value is a comma-separated list of numbers that may start with a minus sign. */
const NUMBER_LIST_FLAGS = new Set(['--layers', '--seg-layers', '--hidden', '--pos-weight', '--crop-scale']);

/**
 * `--layers -4,-1` → `--layers=-4,-1`: yargs reads a single negative number after a flag as its value but splits
 * `-4,-1` into short flags ("Unknown argument: 4"). Arguments after `--` (launch's child command) are left as they are.
 */
export function joinNegativeLists(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const s = args[i]!;
    if (s === '--') return [...out, ...args.slice(i)];
    const next = args[i + 1];
    if (NUMBER_LIST_FLAGS.has(s) && next !== undefined && /^-\d[\d.eE+-]*(\s*,\s*-?[\d.eE+-]+)*$/.test(next)) {
      out.push(`${s}=${next}`);
      i += 1;
    } else out.push(s);
  }
  return out;
}

export function buildParser(args: readonly string[]): Argv {
  const argv = joinNegativeLists(args);
  const showAll = argv.includes('--show-hidden');
  const y: Argv = yargs(argv);
  // yargs has getOptions() at runtime; its typings leave it out. After the command's builder ran, it holds that command's options.
  const options = () => (y as unknown as { getOptions(): { number: string[]; alias: Record<string, string[]> } }).getOptions();
  return y
    // A numeric flag given twice: the last one wins, as a later flag overrides --config (yargs would make a list).
    .middleware((a) => {
      const { number, alias } = options();
      for (const k of number) {
        const v = a[k];
        if (!Array.isArray(v)) continue;
        const camel = k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
        for (const name of new Set([k, camel, ...(alias[k] ?? [])])) if (Array.isArray(a[name])) a[name] = v.at(-1);
      }
    }, true)
    // Every numeric flag of every command against one table of ranges (ranges.ts), before any work.
    .check((a) => {
      const { number, alias } = options();
      const fromConfig = (flag: string) => {
        if (a.config === undefined) return undefined;
        try {
          const v = loadDownstreamConfig(String(a.config))[flag];
          return v === undefined ? undefined : { value: v, file: String(a.config) };
        } catch {
          return undefined;
        }
      };
      checkNumericFlags(a, number, alias, argv, fromConfig);
      return true;
    }, true)
    .scriptName('cxformer')
    .usage('$0 <command> [options]\n\nVision Transformer foundation models for chest X-rays (CXformer / DINOv2 with registers).')
    .command('train [overrides..]', 'Self-supervised pretraining (DINOv2 / CXformer recipe); re-run on the same output to resume', (y) =>
      examples(y
        .positional('overrides', { type: 'string', array: true, describe: 'Config overrides key=value, e.g. output=runs/demo optim.epochs=10 crops.global_crops_scale=[0.4,1]' })
        .option('config', { alias: 'c', type: 'string', describe: `Config file or preset name (${presetNames(PRETRAIN_DIR, ['default']).join(', ')}); repeat to merge several, in order, over configs/pretrain/default.yaml` })
        .option('force', { type: 'boolean', default: false, describe: 'Resume into an output folder whose resolved.yaml has different training values' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output (metrics.jsonl and train.log are still written)' })
        .option('print-config', { type: 'boolean', default: false, describe: 'Print the resolved config and exit (no LibTorch)' })
        .check((a) => {
          const bad = ((a.overrides as string[] | undefined) ?? []).filter((s) => !isOverride(String(s)));
          if (bad.length) throw new Error(`train: unexpected argument(s) ${bad.join(' ')}: give config files with --config and overrides as key=value.\nExample usage: cxformer train --config demo output=runs/demo`);
          return true;
        }), [
        ['tiny CPU run on the built-in phantom data', '$0 train --config demo output=runs/demo'],
        ['CXformer(S) continual pretraining', '$0 train --config cxformer_small output=runs/s data.root=/data/cxr', 'init.weights=models/dinov2-with-registers-small'],
      ]),
    )
    .command('finetune [overrides..]', 'Train and evaluate: classification (linear or --mode full), --task segmentation or report', (y) =>
      examples(layout(segTrainOptions(maskOptions(preprocessOptions(labelledData(modelOptions(y), 'finetune')), 'finetune'))
        .positional('overrides', { type: 'string', array: true, describe: 'Backbone overrides key=value' })
        .option('task', { choices: ['classification', 'segmentation', 'report'] as const, default: 'classification' as const, describe: 'docs/segmentation.md, docs/report-generation.md' })
        .option('report-data', { choices: ['phantom', 'mimic', 'r2gen', 'iu-xray'] as const, describe: 'report: the source of image/report pairs under --root (default phantom)' })
        .option('reports', { type: 'string', describe: 'report, mimic: the MIMIC-CXR report files root (files/pNN/…/sNNN.txt) (default --root)' })
        .option('annotation', { type: 'string', describe: "report, r2gen / iu-xray: R2Gen's annotation.json (default <root>/annotation.json)" })
        .option('decoder', { choices: ['phantom', 'mimic', 'llm'] as const, describe: 'report: captioner size preset (phantom: d 256, 3 layers; mimic: d 512, 3 layers), or llm: the LLaVA recipe with --lm (default phantom)' })
        .option('lm', { type: 'string', describe: 'report, llm: a Hugging Face causal LM folder (llama, mistral, qwen2, qwen3, gpt2)' })
        .option('stage', { type: 'string', describe: 'report, llm: align (projector only), finetune (projector + LoRA or the LM) or align,finetune (default align,finetune)' })
        .option('lora-rank', { type: 'number', describe: `report, llm finetune: LoRA rank on every LM linear layer; 0 = fine-tune the whole LM (default ${LLAVA_STAGE_DEFAULTS.lora.rank})` })
        .option('lora-alpha', { type: 'number', describe: `report, llm finetune: LoRA α (scale α/r) (default ${LLAVA_STAGE_DEFAULTS.lora.alpha})` })
        .option('lora-dropout', { type: 'number', describe: `report, llm finetune: dropout on the adapters' input (default ${LLAVA_STAGE_DEFAULTS.lora.dropout})` })
        .option('lm-lr', { type: 'number', describe: `report, llm finetune: peak lr of the LM's adapters or weights (default ${LLAVA_STAGE_DEFAULTS.finetune.lmLr}; full ${LLAVA_STAGE_DEFAULTS.full.lmLr})` })
        .option('micro-batches', { type: 'number', describe: 'report, llm: split each step into this many micro-batches (gradient accumulation) (default 1)' })
        .option('feature-layer', { type: 'number', describe: 'report, llm: hidden state the projector reads (0 = embeddings, -1 = last block, before the final norm) (default -2)' })
        .option('projector', { type: 'string', describe: 'report, llm: mlp2x_gelu (transformers\' LLaVA), linear or mlpNx_gelu (default mlp2x_gelu)' })
        .option('visual-tokens', { choices: ['full', 'default'] as const, describe: "report, llm: full (CLS, registers and patches) or default (transformers': without CLS) (default full)" })
        .option('prompt', { choices: ['auto', 'plain', 'chat'] as const, describe: "report, llm finetune: the LM's chat template (auto: when it has one) or plain (default auto)" })
        .option('condition', { type: 'string', describe: "report, llm finetune: fields added to the chat prompt, comma-separated: indication (MIMIC-CXR's INDICATION section), classifier (the findings --classifier predicts)" })
        .option('classifier', { type: 'string', describe: 'report, llm, --condition classifier: a multilabel head.safetensors of cxformer finetune on the same --weights' })
        .option('instruction', { type: 'string', describe: `report, llm finetune: the chat prompt's instruction (default '${LLAVA_INSTRUCTION}')` })
        .option('max-report-tokens', { type: 'number', describe: `report, llm: report tokens kept for training and generated at most (default ${LLAVA_STAGE_DEFAULTS.maxReportTokens})` })
        .option('dropout', { type: 'number', describe: "report: the decoder's dropout (default: the preset's, 0.1)" })
        .option('tokenizer', { type: 'string', describe: 'report: word[:MIN_COUNT] (lowercased), word-cased[:MIN_COUNT], bpe[:VOCAB] (trained on the training reports) or a tokenizer.json (default word:3)' })
        .option('memory-block', { type: 'number', describe: 'report: backbone block whose tokens the decoder reads (negative from the end) (default -1)' })
        .option('memory-pool', { type: 'number', describe: 'report: average-pool the patch tokens k×k (1 = off; llm: a cxformer-only model) (default 1)' })
        .option('memory-cache', { type: 'boolean', describe: "report: cache the frozen encoder's memories (default: when they fit in 8 GiB; --no-memory-cache: computed at every step)" })
        .option('labeler', { type: 'string', describe: 'report: labeler for model selection and evaluation: phantom or rules (default phantom)' })
        .option('protocol', { choices: ['cxformer', 'llava-rad', 'r2gen', 'all'] as const, describe: 'report: metric conventions of the test evaluation (default cxformer)' })
        .option('max-train', { type: 'number', describe: 'report: use at most this many training reports (a seeded sample)' })
        .option('val-every', { type: 'number', describe: 'report: validate, keep the best model and save the state every N epochs (and after the last) (default 1)' })
        .option('mode', { choices: ['linear', 'full'] as const, default: 'linear' as const, describe: 'full: backbone trained too' })
        .option('label-type', { choices: ['multilabel', 'binary', 'multiclass'] as const, default: 'multilabel' as const, describe: 'multilabel (sigmoids), binary (one class), multiclass (one-hot classes, softmax; adds accuracy)' })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder (features, head.safetensors, history.jsonl, eval/)' })
        .option('cls-layers', { type: 'number', describe: `CLS tokens of the last n blocks (after the final norm) in the features (default ${CLASSIFICATION.clsLayers})` })
        .option('avgpool', { type: 'boolean', describe: `Append the mean of the last block's patch tokens (default ${CLASSIFICATION.avgpool})` })
        .option('epochs', { type: 'number', describe: `Head training epochs (default ${CLASSIFICATION.epochs}; segmentation ${SEGMENTATION.epochs})` })
        .option('lr', { type: 'number', describe: `Head learning rate (default ${CLASSIFICATION.lr}; segmentation ${SEGMENTATION.lr})` })
        .option('head-batch-size', { type: 'number', describe: `Training batch per optimizer step: feature rows (linear) or images (full) (default ${CLASSIFICATION.headBatchSize})` })
        .option('hidden', { type: 'string', describe: 'Hidden widths of an MLP head, e.g. 512,256 (default: linear)' })
        .option('select-best', { choices: ['valAuroc', 'valAuprc', 'valLoss', 'last'] as const, describe: `Which epoch to keep (with a validation split; valAuprc: full mode) (default ${CLASSIFICATION.selectBest})` })
        .option('patience', { type: 'number', describe: `Early stopping: epochs without a better validation score (0 = off) (default ${CLASSIFICATION.patience})` })
        .option('backbone-lr', { type: 'number', describe: `full: backbone learning rate before layer-wise decay (default ${CLASSIFICATION.backboneLr}; report ${REPORT_ENCODER.backboneLr})` })
        .option('layer-decay', { type: 'number', describe: `full: layer-wise lr decay (1 = off; e.g. 0.75) (default ${CLASSIFICATION.layerwiseDecay})` })
        .option('patch-embed-lr-mult', { type: 'number', describe: `full: extra lr multiplier of the patch embedding (DINOv2: 0.2) (default ${CLASSIFICATION.patchEmbedLrMult})` })
        .option('weight-decay', { type: 'number', describe: `AdamW weight decay of weight matrices (never biases, norms, tokens) (default ${CLASSIFICATION.weightDecay})` })
        .option('warmup-epochs', { type: 'number', describe: `Linear lr warm-up epochs (default ${CLASSIFICATION.warmupEpochs})` })
        .option('schedule', { choices: ['constant', 'cosine'] as const, describe: `Lr schedule after the warm-up (default ${CLASSIFICATION.schedule})` })
        .option('clip-grad', { type: 'number', describe: `Max total gradient norm (0 = off) (default ${CLASSIFICATION.clipGrad})` })
        .option('drop-path', { type: 'number', describe: "full: stochastic depth rate (default: the model's)" })
        .option('crop-scale', { type: 'string', describe: 'full: area range of the train RandomResizedCrop, min,max (docs/recipe.md §5.1: 0.08,1)' })
        .option('augment', { choices: ['spec', 'light', 'none'] as const, describe: 'full: train transform: docs/recipe.md §5.1, light (without its RandomAffine), none (sanity checks) (default: spec)' })
        .option('precision', { choices: ['f32', 'bf16'] as const, describe: 'full: compute precision (default: bf16 autocast on CUDA, f32 on the CPU)' })
        .option('train-seed', { type: 'number', describe: `full: head init, data order, augmentation and stochastic-depth seed (default ${CLASSIFICATION.seed})` })
        .option('pos-weight', { type: 'string', describe: 'full: BCE positive-class weights, one per class, e.g. 2,1,1' })
        .option('checkpoint-steps', { type: 'number', describe: `full and segmentation: also save the training state every N steps (0 = at epoch ends) (default ${CLASSIFICATION.checkpointSteps})` })
        .option('force', { type: 'boolean', default: false, describe: 'full and segmentation: resume an --out folder whose finetune.json / run.json has other settings' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output (logs are still written)' })
        .option('tensorboard', { type: 'boolean', describe: `TensorBoard event files beside metrics.jsonl (--no-tensorboard: none; CXFORMER_TENSORBOARD=0: none for any command) (default ${CLASSIFICATION.tensorboard})` })
        , {
        'Model:': ['weights', 'arch', 'device'],
        'Data:': ['config', 'dataset', 'root', 'manifest', 'classes'],
        'Training:': ['task', 'mode', 'epochs', 'lr', 'batch-size'],
        'Output:': ['out', 'quiet'],
      }, showAll), [
        ['linear probe on the phantom findings of the demo run', '$0 finetune --config phantom --root runs/demo/data', '--weights runs/demo/exported --out runs/probe'],
        ['lungs and heart on phantoms of: cxformer synth --out runs/seg-data', '$0 finetune --config phantom_seg --root runs/seg-data', '--weights runs/demo/exported --out runs/seg'],
        ['full fine-tuning on CheXpert; re-run to resume', '$0 finetune --config chexpert --mode full', '--root /data/CheXpert-v1.0-small --weights models/cxformer-small', '--out runs/chexpert-ft'],
        ['report captioner on phantoms of: cxformer synth --size 224', '$0 finetune --config phantom_report --root runs/rrg-data', '--weights runs/demo/exported --out runs/rrg'],
      ]),
    )
    .command('generate [images..]', 'Write reports for images with a captioner of finetune --task report (its best/ folder)', (y) =>
      examples(y
        .positional('images', { type: 'string', array: true, describe: 'Image files (PNG, JPEG, DICOM)' })
        .option('model', { alias: 'm', type: 'string', demandOption: true, describe: "A captioner folder (finetune --task report's best/) or a LLaVA folder (--decoder llm's <stage>/model/, or its export)" })
        .option('out', { alias: 'o', type: 'string', describe: 'Write JSON Lines {id, image, generated} here (default: print the reports)' })
        .option('beam', { type: 'number', describe: 'Beam search with this many beams (default: the model folder\'s decoding, greedy)' })
        .option('max-new-tokens', { type: 'number', describe: 'At most this many tokens per report (default: the model folder\'s)' })
        .option('sample', { type: 'boolean', default: false, describe: 'Sample instead of searching (with --temperature, --top-p, --seed)' })
        .option('temperature', { type: 'number', default: 1, describe: 'Sampling temperature' })
        .option('top-p', { type: 'number', default: 1, describe: 'Nucleus sampling mass (1 = off)' })
        .option('top-k', { type: 'number', describe: 'Sample among the k most probable tokens only, before the nucleus (default 0 = off)' })
        .option('seed', { type: 'number', default: 0, describe: 'Sampling seed' })
        .option('stream', { type: 'boolean', default: false, describe: 'Print each report word by word as it is decoded, one image at a time' })
        .option('indication', { type: 'string', describe: 'LLaVA trained with --condition indication: the indication of the images (their prompt field)' })
        .option('dtype', { choices: ['f32', 'bf16'] as const, describe: "LLaVA: the weights' dtype while decoding (bf16 halves the memory; for GPUs) (default f32)" })
        .option('device', { type: 'string', default: 'cpu', describe: 'cpu, cuda or cuda:N' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' })
        .check((a) => {
          if (!((a.images as string[] | undefined) ?? []).length) throw new Error('generate: give one or more image files');
          return true;
        }), [
        ['the test images of a phantom captioner run', '$0 generate --model runs/rrg/best runs/rrg-data/images/P00001_01.png'],
        ['word by word, with beam search', '$0 generate --model runs/rrg/best --stream --beam 3', 'runs/rrg-data/images/P00001_01.png'],
      ]),
    )
    .command('evaluate [overrides..]', 'Evaluate a trained head on a dataset split (AUROC/AUPRC with CIs, plots, report.md); --task segmentation: Dice; --task report: generated reports', (y) =>
      examples(layout(maskOptions(preprocessOptions(labelledData(modelOptions(y), 'evaluate')), 'evaluate')
        .positional('overrides', { type: 'string', array: true, describe: 'Backbone overrides key=value' })
        .option('task', { choices: ['classification', 'segmentation', 'report'] as const, default: 'classification' as const, describe: 'segmentation: --head = best.safetensors of a segmentation run; report: see below' })
        .option('head', { type: 'string', describe: "finetune's head.safetensors (segmentation: best.safetensors)" })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Report folder' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' })
        .option('predictions', { type: 'string', describe: 'Generated reports: JSON Lines (id, generated) or CSV' })
        .option('references', { type: 'string', describe: "Reference reports by id, e.g. a phantom reports.csv" })
        .option('protocol', { choices: ['cxformer', 'llava-rad', 'r2gen', 'all'] as const, default: 'cxformer' as const, describe: 'Metric conventions (docs/report-generation.md)' })
        .option('labeler', { type: 'string', describe: 'For label F1: phantom, rules, labels:FILE or labels:GEN.csv,REF.csv' })
        .option('radgraph', { type: 'string', describe: "report: RadGraph annotations of the generated and reference texts, HYP.json,REF.json (the radgraph package's output, keyed by report id)" })
        .option('id-column', { type: 'string', describe: 'report: CSV id column (default id, else Path)' })
        .option('column', { type: 'string', describe: 'report: CSV column of the generated text (default generated, hypothesis, prediction or Findings)' })
        .option('bootstrap-seed', { type: 'number', default: 0, describe: 'report: seed of the bootstrap resamples' }), {
        'Model:': ['weights', 'arch', 'head'],
        'Data:': ['config', 'dataset', 'root', 'split', 'classes', 'masks'],
        'Report:': ['task', 'out', 'bootstrap', 'quiet'],
        'Generated reports (--task report):': ['predictions', 'references', 'protocol', 'labeler'],
      }, showAll), [
        ['the probe of the finetune example on the phantom test split', '$0 evaluate --config phantom --root runs/demo/data', '--weights runs/demo/exported --head runs/probe/head.safetensors', '--out runs/probe-eval'],
        ['the segmentation model of the finetune example', '$0 evaluate --task segmentation --config phantom_seg', '--root runs/seg-data --head runs/seg/best.safetensors --out runs/seg-eval'],
        ["any model's generated reports against phantom references", '$0 evaluate --task report --predictions preds.jsonl', '--references data/reports.csv --labeler phantom --out runs/rrg-eval'],
      ]),
    )
    .command('launch', 'Run train (or finetune) as N data-parallel ranks on this node (torchrun-style): cxformer launch --nproc-per-node N -- train …', (y) =>
      examples(y
        .option('nproc-per-node', { type: 'number', demandOption: true, describe: 'Ranks on this node (one per GPU, or CPU processes with Gloo)' })
        .option('nnodes', { type: 'number', default: 1, describe: 'Nodes taking part (run the same command on each, with its --node-rank)' })
        .option('node-rank', { type: 'number', default: 0, describe: 'Index of this node, 0..nnodes-1' })
        .option('master-addr', { type: 'string', describe: 'Host of node 0 (default 127.0.0.1; required with --nnodes > 1)' })
        .option('master-port', { type: 'number', describe: 'Rendezvous port on the master (default: a free port; required with --nnodes > 1)' })
        .option('grace-s', { type: 'number', default: 10, describe: 'Seconds between SIGTERM and SIGKILL when stopping the ranks after one failed' })
        .option('prefix', { type: 'boolean', default: true, describe: 'Prefix each output line with [rank k] (--no-prefix: raw output)' })
        .option('exec', { type: 'boolean', default: false, describe: 'Run the command after -- as it is (any program), instead of cxformer <command>' })
        .check((a) => {
          const child = a._.slice(1).map(String);
          if (!child.length) throw new Error('launch: give the command to run after --, e.g. cxformer launch --nproc-per-node 2 -- train --config demo output=runs/demo2');
          if (!a.exec && child[0] !== 'train' && child[0] !== 'finetune') throw new Error(`launch: the command after -- must be train or finetune (or pass --exec to run any program), got '${child[0]}'`);
          if (!(Number.isInteger(a['node-rank']) && (a['node-rank'] as number) >= 0 && (a['node-rank'] as number) < (a.nnodes as number))) throw new Error(`launch: --node-rank must be an integer in 0..${(a.nnodes as number) - 1}, got ${a['node-rank']}`);
          if ((a.nnodes as number) > 1 && (a['master-addr'] === undefined || a['master-port'] === undefined)) throw new Error('launch: with --nnodes > 1 give --master-addr <host of node 0> and --master-port <port>, the same on every node');
          return true;
        }), [
        ['two CPU ranks (Gloo) on this machine', '$0 launch --nproc-per-node 2 -- train --config demo', 'output=runs/demo2 compute.device=cpu'],
        ['one node, 8 GPUs', '$0 launch --nproc-per-node 8 -- train --config cxformer_small', 'output=runs/s data.root=/data/cxr', 'init.weights=models/dinov2-with-registers-small'],
        ['full fine-tuning, 4 ranks (batch size per rank)', '$0 launch --nproc-per-node 4 -- finetune --config chexpert', '--mode full --root /data/CheXpert-v1.0-small', '--weights models/cxformer-small --out runs/ft4'],
      ]),
    )
    .command('prepare', 'Decode a dataset once into a packed, checksummed, memory-mappable cache (resumable, parallel)', (y) =>
      examples(y
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Cache folder' })
        .option('root', { type: 'string', demandOption: true, describe: 'Dataset root folder' })
        .option('dataset', { type: 'string', describe: 'Read --root as a public dataset in its official layout: chexpert, mimic, nih, padchest, brax, vindr, rsna (default: a folder or --manifest CSV)' })
        .option('views', { type: 'string', describe: 'With --dataset: keep these views, e.g. PA,AP' })
        .option('split', { type: 'string', describe: 'With --dataset: keep this split (train, valid, test)' })
        .option('manifest', { type: 'string', describe: 'CSV listing the images (relative to --root); default: every image under --root' })
        .option('path-column', { type: 'string', describe: 'Manifest column holding the image path (default Path)' })
        .option('size', { type: 'string', describe: "Shorter side after resizing (e.g. 518, 1024) or 'none' (default 518)" })
        .option('bit-depth', { type: 'string', describe: '8 (CXformer 8-bit gray) or 16 (keeps >= 12-bit precision) (default 8)' })
        .option('workers', { type: 'number', describe: 'Worker threads (default: one per core)' })
        .option('min-side', { type: 'number', describe: 'Skip images whose shorter side is below this (default 32)' })
        .option('max-bad-fraction', { type: 'number', describe: 'Fail when more than this fraction of images is unreadable (default 0.01)' })
        .option('overwrite', { type: 'boolean', describe: 'Rebuild a cache made with other settings' })
        .option('retry-skipped', { type: 'boolean', describe: 'Retry images a complete run skipped' })
        .option('allow-missing', { type: 'boolean', describe: 'Drop manifest rows whose file is missing (counted)' })
        .option('quiet', { alias: 'q', type: 'boolean', describe: 'No progress output' }), [
        ['the phantom images of the demo run, 98 px', '$0 prepare --root runs/demo/data --manifest labels.csv --size 98', '--out runs/cache98'],
        ['CheXpert frontal training images at 518 px', '$0 prepare --dataset chexpert --root /data/CheXpert-v1.0-small', '--views PA,AP --split train --out cache/chexpert518'],
      ]),
    )
    .command('synth', 'Generate the built-in phantom chest-radiograph dataset (images, labels.csv, masks.csv, reports.csv)', (y) =>
      y
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder' })
        .option('n', { type: 'number', default: 200, describe: 'Number of images' })
        .option('seed', { type: 'number', default: 0, describe: 'Seed' })
        .option('size', { type: 'number', default: 512, describe: 'Image side in px' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' })
        .example('# the phantom dataset: images, labels.csv, masks.csv, reports.csv\n$0 synth --out phantoms/ --n 500 --seed 1', ''),
    )
    .command('embed [inputs..]', 'Extract features (CLS, register, patch tokens, last_hidden_state, chosen layers) from images or pixel tensors', (y) =>
      examples(preprocessOptions(modelOptions(y, true))
        .positional('inputs', {
          type: 'string',
          array: true,
          describe: 'Images (PNG 8/16-bit, JPEG) and/or .safetensors files holding a float32 NCHW tensor "pixel_values"; key=value arguments are model overrides',
        })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output .safetensors file' })
        .option('batch-size', { alias: 'b', type: 'number', default: 8, describe: 'Images per forward pass' })
        .option('precision', { choices: ['f32', 'bf16'] as const, default: 'f32' as const, describe: 'f32, or bf16 autocast' })
        .option('layers', { type: 'string', describe: 'Comma-separated block indices (negative from the end) to also save, e.g. -4,-3,-2,-1' })
        .option('norm-layers', { type: 'boolean', default: false, describe: 'Apply the final norm to --layers outputs' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' })
        .check((a) => {
          const inputs = ((a.inputs as string[] | undefined) ?? []).filter((s) => !isOverride(String(s)));
          if (inputs.length === 0) throw new Error('embed: give at least one image or .safetensors input.\nExample usage: cxformer embed --weights <folder> a.png --out feats.safetensors');
          if (!a.weights && !a.arch) throw new Error('embed: give --weights <folder|file.safetensors>, or --arch <preset> for a random-initialised model.\nExample usage: cxformer embed --weights models/cxformer-small a.png --out feats.safetensors');
          if (a.layers !== undefined && !/^\s*-?\d+(\s*,\s*-?\d+)*\s*$/.test(String(a.layers))) throw new Error(`embed: --layers must be comma-separated integers such as -4,-3,-2,-1, got '${a.layers}'`);
          return true;
        }), [
        ['CLS, register and patch tokens of two radiographs', '$0 embed --weights models/cxformer-small xray1.png xray2.jpg', '--out feats.safetensors'],
        ['the demo run\'s teacher on phantoms (from: cxformer phantom --out samples/)', '$0 embed --weights runs/demo/exported samples/phantom_000.png', '--out f.safetensors'],
        ['random-initialised model, pre-normalised input', '$0 embed --arch vit_small --out f.safetensors batch.safetensors', 'model.num_register_tokens=0'],
      ]),
    )
    .command('info [weights]', 'Print architecture, parameter count, key layout and dtypes of weights (no LibTorch); --runtime: LibTorch runtime', (y) =>
      y
        .positional('weights', { type: 'string', describe: 'HF folder or .safetensors file' })
        .option('arch', { type: 'string', describe: 'Architecture preset instead of config.json / inference' })
        .option('runtime', { type: 'boolean', default: false, describe: 'Also load LibTorch and print its version, CUDA, threads, BLAS and oneDNN' })
        .option('threads', { type: 'number', describe: 'LibTorch threads for --runtime' })
        .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output' })
        .check((a) => {
          if (!a.weights && !a.runtime && !a.arch) throw new Error('info: give weights, --arch <preset> or --runtime.\nExample usage: cxformer info models/cxformer-small');
          return true;
        }),
    )
    .command('export [overrides..]', 'Export a training run or checkpoint (teacher as HF folder + dino_head.safetensors), or --weights as an HF folder / original-layout file', (y) =>
      examples(modelOptions(y, true)
        .positional('overrides', { type: 'string', array: true, describe: 'A run folder or checkpoint to export, and/or model overrides key=value' })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder (hf) or .safetensors file (original)' })
        .option('format', { choices: ['hf', 'original', 'llava-hf'] as const, default: 'hf' as const, describe: 'hf folder, one file with original DINOv2 names, or llava-hf: a LLaVA run as a transformers folder' })
        .option('dtype', { choices: ['f32', 'bf16', 'f16'] as const, default: 'f32' as const, describe: 'Stored dtype' })
        .option('head', {
          type: 'string',
          describe:
            "A classification head of 'cxformer finetune' (head.safetensors) to export with --weights: as transformers' Dinov2(WithRegisters)ForImageClassification when it is one linear layer on --cls-layers 1 --avgpool features, else as head.safetensors + head_config.json beside the backbone",
        })
        .option('backbone-only', { type: 'boolean', default: false, describe: 'Drop the classifier.* tensors of classification weights (kept by default)' })
        .check((a) => {
          const pos = ((a.overrides as string[] | undefined) ?? []).map(String);
          const sources = pos.filter((s) => !isOverride(s));
          if (sources.length > 1) throw new Error(`export: one run folder or checkpoint at a time, got ${sources.join(' ')}`);
          if (sources.length && (a.weights || a.arch)) throw new Error('export: give either a run/checkpoint or --weights/--arch, not both');
          if (a.format === 'llava-hf' && !sources.length) throw new Error('export: --format llava-hf exports a run folder of finetune --task report --decoder llm.\nExample usage: cxformer export runs/llava --format llava-hf --out exported-llava/');
          if (a.head !== undefined && !a.weights) throw new Error('export: --head goes with the --weights it was trained on.\nExample usage: cxformer export --weights runs/ft/best/model --head runs/ft/best/head.safetensors --out exported/');
          if (!sources.length && !a.weights && !a.arch) throw new Error('export: give a run folder or checkpoint, --weights, or --arch <preset> for a random-initialised model.\nExample usage: cxformer export runs/demo --out exported/');
          return true;
        }), [
        ['the teacher of the demo run as a Hugging Face folder', '$0 export runs/demo --out runs/demo/hf'],
        ['backbone + classification head', '$0 export --weights runs/ft/best/model', '--head runs/ft/best/head.safetensors --out exported-classifier/'],
      ]),
    )
    .command('phantom', 'Write synthetic phantom chest radiographs (8-bit PNG), the built-in sample data', (y) =>
      y
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder' })
        .option('count', { alias: 'n', type: 'number', default: 8, describe: 'Number of images' })
        .option('size', { type: 'number', default: 512, describe: 'Image side in px' })
        .option('seed', { type: 'number', default: 0, describe: 'Seed' }),
    )
    .command('report <run>', 'Write the run\'s report.html: one self-contained page (curves, evaluation tables with CIs, plots, settings; no LibTorch)', (y) =>
      examples(y
        .positional('run', { type: 'string', describe: 'Run folder of train, finetune or evaluate' })
        .option('out', { alias: 'o', type: 'string', describe: 'Page to write (default RUN/report.html)' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: "Don't print the page's path" }), [
        ['the page of the demo run (open runs/demo/report.html in a browser)', '$0 report runs/demo'],
        ['an evaluation folder, the page written elsewhere', '$0 report runs/probe-eval --out probe-eval.html'],
      ]),
    )
    .command('label <reports>', 'Label report texts (a CSV such as synth\'s reports.csv) with CheXpert-style cells: phantom (exact), rules (cheXpert-lite) or labels:FILE (no LibTorch)', (y) =>
      examples(y
        .positional('reports', { type: 'string', describe: 'CSV with an id column and a report-text column' })
        .option('labeler', { type: 'string', demandOption: true, describe: 'phantom, rules, or labels:FILE (labels computed elsewhere, e.g. CheXbert)' })
        .option('out', { alias: 'o', type: 'string', describe: 'Label CSV to write (default: stdout)' })
        .option('column', { type: 'string', default: 'Findings', describe: 'Report-text column' })
        .option('id-column', { type: 'string', default: 'Path', describe: 'Id column (copied to the output; the key of labels:FILE)' })
        .option('codes', { choices: ['cells', 'chexbert'] as const, default: 'cells' as const, describe: 'Numbers in labels:FILE: cells (1/0/-1/blank) or chexbert (0 blank, 1 pos, 2 neg, 3 unc)' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No warnings or summary on stderr' })
        .check((a) => {
          const l = String(a.labeler);
          if (!['phantom', 'rules'].includes(l) && !/^labels:.+/.test(l)) throw new Error(`label: unknown labeler '${l}': expected phantom, rules or labels:FILE.\nExample usage: cxformer label --labeler rules reports.csv`);
          return true;
        }), [
        ['labels of phantom reports, read back exactly', '$0 label --labeler phantom phantoms/reports.csv', '--out phantoms/labels-from-text.csv'],
        ['CheXpert-style labels of generated reports (cheXpert-lite rules)', '$0 label --labeler rules preds.csv --column Report --id-column id'],
      ]),
    )
    .demandCommand(1, `Give a command: ${COMMANDS.join(', ')}.`)
    .strict()
    .help()
    .alias('h', 'help')
    .showHidden('show-hidden', 'With --help: list the advanced options too')
    .version(false)
    // The terminal's width (or $COLUMNS when piped), at most 120.
    .wrap(Math.min(120, process.stdout.columns || Number(process.env.COLUMNS) || 100));
}

/** Parses argv without running anything; throws an Error with yargs' message on bad arguments. */
export function parseCli(args: readonly string[]): Record<string, unknown> & { _: (string | number)[] } {
  let failure: string | undefined;
  const parsed = buildParser(args)
    .exitProcess(false)
    .fail((msg, err) => {
      failure = err?.message ?? msg;
    })
    .parseSync();
  if (failure) throw new Error(failure);
  return parsed as Record<string, unknown> & { _: (string | number)[] };
}
