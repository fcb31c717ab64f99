/**
 * `cxformer export` to a Hugging Face folder (docs/recipe.md §2.8, "Hugging Face interop"): config.json typed as
 * transformers' config classes declare (src/model/hf-json.ts), model.safetensors, preprocessor_config.json and a
 * README.md model card with the exact transformers preprocessing recipe (src/model/model-card.ts).
 *
 * Classification, never dropping tensors silently:
 * - `head` (a cxformer head.safetensors): when it reads concat(CLS, mean patch tokens) of the last block after
 *   the final norm into one linear layer (features `--cls-layers 1 --avgpool`, no hidden layers), the folder is a
 *   transformers `Dinov2ForImageClassification` / `Dinov2WithRegistersForImageClassification` (backbone under
 *   `dinov2.` / `dinov2_with_registers.`, `classifier.weight` / `classifier.bias`, id2label from the class names);
 *   otherwise it is the backbone plus head.safetensors + head_config.json, with a Python snippet in the README.
 * - weights that already carry `classifier.*` (an HF *ForImageClassification folder; the native loader skips them
 *   by design) keep them, with the source config.json's labels; `backboneOnly` drops them explicitly.
 * - other tensors outside the backbone (DINO / iBOT heads, the student of a training checkpoint) are left out and
 *   listed in the returned notes.
 * Every file is written atomically (temp + rename).
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { toHfPreprocessorConfig, writeJsonAtomic, type Backbone } from '../backbone.js';
import { CLASSIFICATION } from '../config/downstream.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { CxformerError } from '../native/load.js';
import { toHfConfig, type VitConfig } from './config.js';
import { writeHfConfig } from './hf-json.js';
import { modelCard, type CardHead } from './model-card.js';

export type ExportDtype = 'f32' | 'bf16' | 'f16';

export interface HfExportOptions {
  /** Output folder (created). */
  out: string;
  /** @default 'f32' */
  dtype?: ExportDtype;
  /** Preprocessing written to preprocessor_config.json. @default the head's (if recorded), else the model's */
  preprocess?: PreprocessOptions;
  /** A cxformer classification head (head.safetensors of `cxformer finetune`). */
  head?: string;
  /** Drop `classifier.*` of classification weights instead of carrying them. */
  backboneOnly?: boolean;
  /** What is exported, for the model card. @default the weights file */
  source?: string;
  /** The folder also holds a pretraining run's dino_head.safetensors (model card). */
  dinoHead?: boolean;
}

export interface HfExportResult {
  /** transformers class in config.json `architectures`. */
  architecture: string;
  /** Files written, relative to the folder. */
  files: string[];
  /** What was decided (head layout, left-out tensors, preprocessing source), one line each. */
  notes: string[];
}

/** A cxformer classification head file, read and checked against the backbone. */
export interface HeadFile {
  file: string;
  classes: string[];
  /** multilabel | binary | multiclass */
  labelType: string;
  clsLayers: number;
  avgpool: boolean;
  hidden: number[];
  /** `head.<i>.weight` / `head.<i>.bias`, float32. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  /** The preprocessing the head's features were computed with, when the file records it. */
  preprocess: PreprocessOptions | null;
  metadata: Record<string, string>;
}

const DTYPE = { f32: 'F32', bf16: 'BF16', f16: 'F16' } as const;

function inputError(file: string, msg: string): never {
  throw new CxformerError('CXF_INPUT', `${file}: ${msg}`);
}

function parseMeta<T>(file: string, md: Record<string, string>, key: string, fallback: T): T {
  if (md[key] === undefined || md[key] === '') return fallback;
  try {
    return JSON.parse(md[key] as string) as T;
  } catch {
    return inputError(file, `metadata "${key}" is not valid JSON: ${md[key]}`);
  }
}

/** Reads a head written by `cxformer finetune` (linear or full mode) and checks its widths against `c`. */
export async function readHeadFile(file: string, c: VitConfig): Promise<HeadFile> {
  const st = await readSafetensors(file);
  const md = st.metadata ?? {};
  if (md.format !== 'cxformer-probe-head') {
    inputError(file, `expected a cxformer classification head (metadata format "cxformer-probe-head"), found ${md.format === undefined ? 'no format' : `"${md.format}"`}`);
  }
  const cfg = parseMeta<{ hidden?: number[]; task?: string }>(file, md, 'config', {});
  const fo = parseMeta<{ clsLayers?: number; avgpool?: boolean }>(file, md, 'feature_options', {});
  const classes = parseMeta<string[]>(file, md, 'classes', []);
  const hidden = cfg.hidden ?? [];
  const clsLayers = fo.clsLayers ?? CLASSIFICATION.clsLayers;
  const avgpool = fo.avgpool ?? CLASSIFICATION.avgpool;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of st.tensors) {
    if (!(t.data instanceof Float32Array)) inputError(file, `tensor ${name}: expected a floating-point tensor, found ${t.dtype}`);
    tensors.set(name, { shape: t.shape, data: t.data });
  }
  const F = (clsLayers + (avgpool ? 1 : 0)) * c.embed_dim;
  const w0 = tensors.get('head.0.weight');
  if (!w0 || w0.shape.length !== 2) inputError(file, `expected a tensor head.0.weight [out, in], found ${[...tensors.keys()].join(', ') || 'no tensors'}`);
  if (w0.shape[1] !== F) {
    inputError(
      file,
      `head.0.weight takes ${w0.shape[1]} features, but this backbone gives ${F} (${clsLayers} CLS token(s)${avgpool ? ' + mean patch token' : ''} × D ${c.embed_dim}): was the head trained on another backbone?`,
    );
  }
  const last = tensors.get(`head.${hidden.length}.weight`);
  if (!last || tensors.size !== 2 * (hidden.length + 1)) {
    inputError(file, `expected ${hidden.length + 1} Linear layer(s) head.<i>.weight/bias (hidden ${JSON.stringify(hidden)}), found ${[...tensors.keys()].join(', ')}`);
  }
  if (classes.length !== last.shape[0]) inputError(file, `metadata "classes" names ${classes.length} classes but the head has ${last.shape[0]} outputs`);
  const pre = parseMeta<Partial<PreprocessOptions> | null>(file, md, 'preprocess', null);
  return {
    file,
    classes,
    labelType: md.label_type || cfg.task || 'multilabel',
    clsLayers,
    avgpool,
    hidden,
    tensors,
    preprocess: pre ? resolvePreprocessOptions(pre) : null,
    metadata: md,
  };
}

/** Whether transformers' *ForImageClassification computes exactly this head (see the module docs). */
export function headIsHfExpressible(h: Pick<HeadFile, 'clsLayers' | 'avgpool' | 'hidden'>): boolean {
  return h.clsLayers === 1 && h.avgpool && h.hidden.length === 0;
}

/** config.json labels for `classes` and the label type. */
export function hfLabels(classes: readonly string[], labelType: string): Record<string, unknown> {
  return {
    id2label: Object.fromEntries(classes.map((c, i) => [String(i), c])),
    label2id: Object.fromEntries(classes.map((c, i) => [c, i])),
    problem_type: labelType === 'multiclass' ? 'single_label_classification' : 'multi_label_classification',
  };
}

/** transformers class names of the exported backbone family. */
export function hfClasses(c: VitConfig): { model: string; classification: string; prefix: string } {
  return c.num_register_tokens > 0
    ? { model: 'Dinov2WithRegistersModel', classification: 'Dinov2WithRegistersForImageClassification', prefix: 'dinov2_with_registers.' }
    : { model: 'Dinov2Model', classification: 'Dinov2ForImageClassification', prefix: 'dinov2.' };
}

function describeGroups(names: readonly string[]): string {
  const groups = new Map<string, number>();
  for (const n of names) {
    const g = n.split('.').slice(0, 2).join('.');
    groups.set(g, (groups.get(g) ?? 0) + 1);
  }
  return [...groups].map(([g, k]) => `${g}.* (${k})`).join(', ');
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Exports `model` (loaded from `model.resolved`) as a Hugging Face folder; see the module docs.
 *
 * @throws CxformerError CXF_ARG for contradictory options, CXF_INPUT for a head that does not fit the backbone,
 *   ConfigError for an architecture transformers cannot express (a non-integer mlp_ratio)
 */
export async function exportHfFolder(model: Backbone, o: HfExportOptions): Promise<HfExportResult> {
  const c = model.config;
  const r = model.resolved;
  const names = hfClasses(c);
  const dtype = o.dtype ?? 'f32';
  const notes: string[] = [];
  const src = r.weights?.file ?? null;

  // Tensors of the source outside the backbone: classifier.* is carried (or dropped on request), the rest is listed.
  const prefix = r.layout?.prefix ?? '';
  const outside = r.header ? [...r.header.tensors.keys()].filter((n) => !n.startsWith(prefix)) : [];
  const srcClassifier = outside.filter((n) => n.startsWith('classifier.'));
  const leftOut = outside.filter((n) => !n.startsWith('classifier.'));
  if (leftOut.length) notes.push(`left out ${leftOut.length} tensor(s) of ${src} outside the backbone: ${describeGroups(leftOut)}`);
  let carry = srcClassifier.length > 0 && !o.backboneOnly;
  if (srcClassifier.length && o.backboneOnly) notes.push(`dropped ${srcClassifier.join(', ')} of ${src} (--backbone-only)`);
  if (carry && o.head) {
    throw new CxformerError('CXF_ARG', `--head ${o.head}: ${src} already holds a classifier (${srcClassifier.join(', ')}); give --backbone-only to replace it with the head`);
  }

  const head = o.head ? await readHeadFile(o.head, c) : null;
  const headKind: CardHead['kind'] = head ? (headIsHfExpressible(head) ? 'hf' : 'cxformer') : carry ? 'hf' : 'none';

  // Preprocessing: given, else what the head's features were computed with, else the weights' own.
  let pre = o.preprocess ?? model.preprocess;
  if (!o.preprocess && head?.preprocess) {
    if (!sameJson(head.preprocess, model.preprocess)) notes.push(`preprocessor_config.json: the preprocessing ${o.head} was trained with (recorded in its metadata), not the backbone's`);
    pre = head.preprocess;
  } else if (head && !head.preprocess) {
    notes.push(
      `${o.head} does not record its preprocessing (full-mode heads, older linear heads): preprocessor_config.json holds the backbone folder's, which for a full-mode best/model is the one it was trained with`,
    );
  }

  await mkdir(o.out, { recursive: true });
  const files = ['config.json', 'model.safetensors', 'preprocessor_config.json', 'README.md'];
  const modelFile = path.join(o.out, 'model.safetensors');
  const hfCfg = toHfConfig(c);
  let architecture = names.model;
  let cardHead: CardHead = { kind: 'none' };

  if (headKind === 'hf') {
    // Backbone under the family prefix + classifier.weight [C, 2D] / classifier.bias [C].
    let classifier: Record<string, { shape: number[]; data: Float32Array }>;
    let labels: Record<string, unknown>;
    let classes: string[];
    let labelType: string;
    let from: string;
    if (head) {
      classifier = { 'classifier.weight': head.tensors.get('head.0.weight')!, 'classifier.bias': head.tensors.get('head.0.bias')! };
      classes = head.classes;
      labelType = head.labelType;
      labels = hfLabels(classes, labelType);
      from = o.head!;
      notes.push(`${o.head}: one linear layer on concat(CLS, mean patch tokens) of the last block → ${names.classification}`);
    } else {
      const st = await readSafetensors(src!, { select: (n) => n.startsWith('classifier.') });
      classifier = {};
      for (const [n, t] of st.tensors) {
        if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) inputError(src!, `tensor ${n}: expected a floating-point tensor, found ${t.dtype}`);
        classifier[n] = { shape: t.shape, data: Float32Array.from(t.data) };
      }
      const w = classifier['classifier.weight'];
      if (!w || !classifier['classifier.bias'] || w.shape.length !== 2 || w.shape[1] !== 2 * c.embed_dim || Object.keys(classifier).length !== 2) {
        inputError(
          src!,
          `expected classifier.weight [C, ${2 * c.embed_dim}] and classifier.bias [C] (transformers' ${names.classification}), found ${srcClassifier.map((n) => `${n} ${JSON.stringify(r.header!.tensors.get(n)!.shape)}`).join(', ')}; give --backbone-only to export the backbone alone`,
        );
      }
      const srcCfg = r.weights?.configJson ? (JSON.parse(await readFile(r.weights.configJson, 'utf8')) as Record<string, unknown>) : {};
      const C = w.shape[0] as number;
      const id2label = (srcCfg.id2label as Record<string, string> | undefined) ?? Object.fromEntries(Array.from({ length: C }, (_, i) => [String(i), `LABEL_${i}`]));
      classes = Array.from({ length: C }, (_, i) => id2label[String(i)] ?? `LABEL_${i}`);
      labelType = srcCfg.problem_type === 'single_label_classification' ? 'multiclass' : srcCfg.problem_type === 'multi_label_classification' ? 'multilabel' : 'unknown';
      labels = {
        id2label,
        label2id: (srcCfg.label2id as Record<string, number> | undefined) ?? Object.fromEntries(classes.map((k, i) => [k, i])),
        ...(srcCfg.problem_type !== undefined ? { problem_type: srcCfg.problem_type } : {}),
      };
      from = src!;
      notes.push(`carried ${srcClassifier.join(', ')} of ${src} (the native loader skips them) → ${names.classification}`);
    }
    const tmp = path.join(o.out, `.backbone-${process.pid}-${Math.random().toString(36).slice(2)}.safetensors`);
    try {
      await model.save(tmp, { layout: 'hf', dtype });
      const bb = await readSafetensors(tmp);
      const tensors: Record<string, TensorToWrite> = {};
      for (const [n, t] of bb.tensors) tensors[`${names.prefix}${n}`] = { dtype: t.dtype, shape: t.shape, data: t.data };
      for (const [n, t] of Object.entries(classifier)) tensors[n] = { dtype: DTYPE[dtype], shape: t.shape, data: t.data };
      await writeSafetensors(modelFile, tensors, { ...(bb.metadata ?? {}), format: 'pt', cxformer_classifier: from });
    } finally {
      await rm(tmp, { force: true });
    }
    architecture = names.classification;
    Object.assign(hfCfg, { architectures: [architecture] }, labels);
    cardHead = { kind: 'hf', className: architecture, classes, labelType, source: from };
  } else {
    await model.save(modelFile, { layout: 'hf', dtype });
    if (head) {
      // Backbone + the head as cxformer writes it, with its layout in head_config.json.
      const tensors: Record<string, TensorToWrite> = {};
      for (const [n, t] of head.tensors) tensors[n] = { dtype: 'F32', shape: t.shape, data: t.data };
      await writeSafetensors(path.join(o.out, 'head.safetensors'), tensors, head.metadata);
      await writeJsonAtomic(path.join(o.out, 'head_config.json'), {
        format: 'cxformer-probe-head',
        classes: head.classes,
        label_type: head.labelType,
        output: head.labelType === 'multiclass' ? 'softmax' : 'sigmoid',
        features: {
          cls_layers: head.clsLayers,
          avgpool: head.avgpool,
          order: [
            `CLS token of each of the last ${head.clsLayers} blocks (oldest first), after the final layer norm`,
            ...(head.avgpool ? [`mean of the last block's patch tokens after the final layer norm${c.num_register_tokens ? ', register tokens excluded' : ''}`] : []),
          ],
          dim: (head.clsLayers + (head.avgpool ? 1 : 0)) * c.embed_dim,
        },
        layers: head.hidden.length + 1,
        hidden: head.hidden,
        activation: 'gelu (exact, erf) between Linear layers',
        source: head.file,
      });
      files.push('head.safetensors', 'head_config.json');
      notes.push(
        `${o.head}: ${head.hidden.length ? `an MLP head (hidden ${head.hidden.join(', ')})` : 'a linear head'} on ${head.clsLayers} CLS token(s)${head.avgpool ? ' + mean patch token' : ''}: not transformers' ${names.classification} (one linear layer on the last block's CLS + mean patch token); written as head.safetensors + head_config.json, README.md has the snippet`,
      );
      cardHead = { kind: 'cxformer', classes: head.classes, labelType: head.labelType, clsLayers: head.clsLayers, avgpool: head.avgpool, hidden: head.hidden, source: head.file };
    }
  }
  await writeHfConfig(path.join(o.out, 'config.json'), hfCfg);
  await writeJsonAtomic(path.join(o.out, 'preprocessor_config.json'), toHfPreprocessorConfig(pre));
  const card = modelCard({ config: c, preprocess: pre, source: o.source ?? src ?? 'a random initialisation', backboneClass: names.model, head: cardHead, dinoHead: o.dinoHead ?? false });
  await writeFileAtomic(path.join(o.out, 'README.md'), card);
  return { architecture, files, notes };
}

