/**
 * The classifier prompt field of the LLaVA recipe (`--condition classifier`, RaDialog-style conditioning: the findings
 * a classifier predicts, given to the LM as text): a classification head of `cxformer finetune` (linear probe,
 * `head.safetensors`, multilabel; train it on the same --weights at the LLaVA's preprocessing) applied to the frozen
 * backbone's features of each image, preprocessed as the LLaVA's; a class is "predicted" when its probability is at
 * least the threshold (0.5). The run folder caches every record's findings
 * (`classifier-findings.json`); each model folder holds the head and the backbone it reads (`classifier/`), so that
 * `cxformer generate` computes the same field for new images.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { type Backbone, type LoadBackboneOptions, loadBackbone, writeJsonAtomic } from '../backbone.js';
import { copyAtomic } from '../data/fsutil.js';
import { extractFeatures } from '../finetune/features.js';
import type { PreprocessOptions } from '../image/options.js';
import { loadHead } from '../finetune/classify.js';
import { predictProbe } from '../finetune/probe.js';
import { CxformerError } from '../native/load.js';

/** Probability at or above which a class counts as predicted. */
export const CLASSIFIER_THRESHOLD = 0.5;
/** Where a model folder keeps the classifier: `head.safetensors` and `backbone/` (an HF backbone folder). */
export const CLASSIFIER_DIR = 'classifier';

/** A head and the backbone whose features it reads, ready to label images. */
export interface FindingsClassifier {
  classes: string[];
  /** Each image's predicted classes (probability ≥ the threshold), in the head's class order, the images preprocessed as `pre` (the LLaVA's). */
  findings(images: readonly string[], pre: PreprocessOptions, onProgress?: (done: number, total: number) => void): Promise<string[][]>;
  /** Writes `dir/classifier/` (the head file and the backbone folder). */
  save(dir: string): Promise<void>;
}

/** The head of `headFile`, checked before any backbone loads: it exists and is multilabel. */
export async function checkedHead(headFile: string): Promise<Awaited<ReturnType<typeof loadHead>>> {
  if (!existsSync(headFile)) throw new CxformerError('CXF_INPUT', `--classifier ${headFile}: no such file (a head.safetensors of cxformer finetune, trained on the same --weights)`);
  const h = await loadHead(headFile);
  if ((h.head.config.task ?? 'multilabel') !== 'multilabel') throw new CxformerError('CXF_INPUT', `--classifier ${headFile}: a ${h.head.config.task} head; the prompt field needs a multilabel head (one probability per finding)`);
  return h;
}

function classifierOf(h: Awaited<ReturnType<typeof loadHead>>, backbone: Backbone, save: (dir: string) => Promise<void>): FindingsClassifier {
  return {
    classes: h.classes,
    async findings(images, pre, onProgress) {
      const f = await extractFeatures(backbone, images, { ...h.features, preprocess: pre, ...(onProgress ? { onProgress } : {}) });
      const p = predictProbe(h.head, f);
      const C = p.shape[1] as number;
      return images.map((_, i) => h.classes.filter((_c, j) => (p.data[i * C + j] as number) >= CLASSIFIER_THRESHOLD));
    },
    save,
  };
}

/** The classifier of a run: `head` on the run's backbone (its weights or preset). */
export async function runClassifier(head: string, backbone: LoadBackboneOptions): Promise<FindingsClassifier> {
  const h = await checkedHead(head);
  const model = await loadBackbone(backbone);
  return classifierOf(h, model, async (dir) => {
    const out = path.join(dir, CLASSIFIER_DIR);
    await mkdir(out, { recursive: true });
    await copyAtomic(head, path.join(out, 'head.safetensors'));
    await model.exportHf(path.join(out, 'backbone'));
  });
}

/** The classifier a model folder holds (`classifier/`). */
export async function folderClassifier(dir: string, o: { device?: string; threads?: number } = {}): Promise<FindingsClassifier> {
  const c = path.join(dir, CLASSIFIER_DIR);
  if (!existsSync(path.join(c, 'head.safetensors')) || !existsSync(path.join(c, 'backbone', 'config.json'))) {
    throw new CxformerError('CXF_INPUT', `${dir}: its prompts carry a classifier's findings but ${c} lacks head.safetensors or backbone/`);
  }
  const h = await checkedHead(path.join(c, 'head.safetensors'));
  const model = await loadBackbone({ weights: path.join(c, 'backbone'), ...o });
  return classifierOf(h, model, async () => undefined);
}

/**
 * Every record's predicted findings, computed once and kept in `file` (keyed by record id, with the head's path and
 * size: another head computes them again).
 */
export async function cachedFindings(file: string, head: string, classifier: FindingsClassifier, records: readonly { id: string; image: string }[], pre: PreprocessOptions, onProgress?: (done: number, total: number) => void): Promise<Map<string, string[]>> {
  const { size } = await stat(head);
  const key = { head: path.resolve(head), bytes: size, threshold: CLASSIFIER_THRESHOLD, preprocess: pre };
  if (existsSync(file)) {
    const c = JSON.parse(await readFile(file, 'utf8')) as { key: typeof key; findings: Record<string, string[]> };
    if (JSON.stringify(c.key) === JSON.stringify(key) && records.every((r) => c.findings[r.id] !== undefined)) return new Map(Object.entries(c.findings));
  }
  const found = await classifier.findings(records.map((r) => r.image), pre, onProgress);
  const findings = Object.fromEntries(records.map((r, i) => [r.id, found[i] as string[]]));
  await writeJsonAtomic(file, { key, findings });
  return new Map(Object.entries(findings));
}
