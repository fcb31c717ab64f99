/**
 * Label types of the classification tasks (`--label-type`), for the linear and full modes alike:
 * - `multilabel`: C independent findings (masked BCE), the dataset's targets and mask as they are;
 * - `binary`: one class (C = 1), its positive-class probability (sigmoid); AUROC/AUPRC of that class;
 * - `multiclass`: C ≥ 2 mutually exclusive classes, one-hot in the data (exactly one positive per labelled row),
 *   softmax cross-entropy; the report has one-vs-rest per-class AUROC/AUPRC and their macro mean, plus accuracy
 *   (argmax = the labelled class).
 * The native heads take multiclass targets as the class index in column 0 with `mask[:, 0]` selecting the rows
 * (crates/core/src/classify/probe.rs); {@link nativeTargets} converts.
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../data/fsutil.js';
import { CxformerError } from '../native/load.js';

export const LABEL_TYPES = ['multilabel', 'binary', 'multiclass'] as const;
export type LabelType = (typeof LABEL_TYPES)[number];

/** Checks the class list against the label type. */
export function checkLabelType(labelType: string, classes: readonly string[]): LabelType {
  if (!(LABEL_TYPES as readonly string[]).includes(labelType)) {
    throw new CxformerError('CXF_ARG', `--label-type: expected one of ${LABEL_TYPES.join(', ')}, got '${labelType}'`);
  }
  if (labelType === 'binary' && classes.length !== 1) {
    throw new CxformerError('CXF_ARG', `--label-type binary needs exactly one class (the positive finding) in --classes, got ${classes.length}: ${classes.join(', ')}`);
  }
  if (labelType === 'multiclass' && classes.length < 2) {
    throw new CxformerError('CXF_ARG', `--label-type multiclass needs at least two mutually exclusive classes in --classes, got ${classes.length}: ${classes.join(', ')}`);
  }
  if (classes.length === 0) throw new CxformerError('CXF_ARG', '--classes: give at least one class name');
  return labelType as LabelType;
}

/**
 * The targets and mask the native code trains on. multilabel / binary: unchanged. multiclass: column 0 = the index
 * of the row's single positive class and mask[:, 0] = 1 when every class of the row is labelled; a row with some
 * label missing is left out (mask 0); a fully labelled row without exactly one positive is an error naming the image.
 */
export function nativeTargets(
  labelType: LabelType,
  targets: Float32Array,
  mask: Uint8Array,
  C: number,
  ids: readonly string[],
  classes: readonly string[],
): { targets: Float32Array; mask: Uint8Array } {
  if (labelType !== 'multiclass') return { targets, mask };
  const n = ids.length;
  const t = new Float32Array(n * C);
  const m = new Uint8Array(n * C);
  for (let i = 0; i < n; i++) {
    let labelled = true;
    const pos: number[] = [];
    for (let c = 0; c < C; c++) {
      if (!mask[i * C + c]) labelled = false;
      else if ((targets[i * C + c] as number) > 0.5) pos.push(c);
    }
    if (!labelled) continue;
    if (pos.length !== 1) {
      throw new CxformerError(
        'CXF_INPUT',
        `multiclass labels: image ${ids[i]} has ${pos.length} positive classes${pos.length ? ` (${pos.map((c) => classes[c]).join(', ')})` : ''}; ` +
          `expected exactly one of ${classes.join(', ')} (use --label-type multilabel for findings that can co-occur)`,
      );
    }
    t[i * C] = pos[0] as number;
    m[i * C] = 1;
  }
  return { targets: t, mask: m };
}

/** Accuracy of multiclass probabilities (N, C) against one-hot labels over the fully labelled rows; null if none. */
export function multiclassAccuracy(probs: Float32Array, targets: Float32Array, mask: Uint8Array, C: number): { value: number | null; n: number } {
  const n = probs.length / C;
  let right = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    let labelled = true;
    let truth = -1;
    let best = 0;
    for (let c = 0; c < C; c++) {
      if (!mask[i * C + c]) labelled = false;
      if ((targets[i * C + c] as number) > 0.5) truth = c;
      if ((probs[i * C + c] as number) > (probs[i * C + best] as number)) best = c;
    }
    if (!labelled || truth < 0) continue;
    count++;
    if (best === truth) right++;
  }
  return { value: count ? right / count : null, n: count };
}

/**
 * Adds the label type (and for multiclass the accuracy) to a written report: metrics.json gets `label_type` and
 * `accuracy: {value, n}`, report.md a line after the table. Both rewritten atomically.
 */
export async function annotateReport(
  files: { metrics: string; report: string },
  labelType: LabelType,
  accuracy?: { value: number | null; n: number },
): Promise<Record<string, unknown>> {
  const m = JSON.parse(await readFile(files.metrics, 'utf8')) as Record<string, unknown>;
  m.label_type = labelType;
  if (accuracy) m.accuracy = accuracy;
  await writeFileAtomic(files.metrics, `${JSON.stringify(m, null, 2)}\n`);
  if (accuracy || labelType !== 'multilabel') {
    const md = await readFile(files.report, 'utf8');
    const what =
      labelType === 'binary'
        ? 'Binary task: AUROC/AUPRC of the positive class.'
        : labelType === 'multiclass'
          ? `Multiclass task (softmax): one-vs-rest AUROC/AUPRC per class; accuracy (argmax) ${accuracy?.value === null || accuracy === undefined ? '— (no labelled rows)' : `${(accuracy.value * 100).toFixed(2)} over ${accuracy.n} images`}.`
          : '';
    await writeFileAtomic(files.report, md.replace(/\n## Curves/, `\n${what}\n\n## Curves`));
  }
  return m;
}
