/**
 * Label policies: how a record's raw labels (1, 0, −1 uncertain, null blank, absent) become training targets and a
 * loss mask for a class list.
 *
 *   value  | policy                         | target | mask
 *   1      |                                | 1      | 1
 *   0      |                                | 0      | 1
 *   −1     | uncertain 'ones'  (U-Ones)     | 1      | 1
 *   −1     | uncertain 'zeros' (U-Zeros)    | 0      | 1
 *   −1     | uncertain 'ignore' (U-Ignore)  | 0      | 0   (masked out; the target value is meaningless)
 *   null   | blank 'zero'                   | 0      | 1
 *   null   | blank 'ignore'                 | 0      | 0
 *   null   | blank 'uncertain'              | as −1 under `uncertain`
 *   absent | absent 'ignore'                | 0      | 0   (the source does not have this class)
 *   absent | absent 'zero'                  | 0      | 1   (exhaustive label lists, e.g. PadChest)
 *
 * Masked targets are 0, never NaN, so that `loss · mask` stays finite.
 *
 * `noFindingRule` (docs/recipe.md §5.1, torchxrayvision's CheX_Dataset): on rows with 'No Finding' = 1 every other class except
 * 'Support Devices' is set to 0 before the policy applies.
 *
 * CXformer's quirk (docs/recipe.md §5.1 and §7.8): its U-ONES turns −1 into NaN and then every NaN into 1, and blank cells are
 * NaN too, so blanks become positive. `blank: 'uncertain'` reproduces that (`CXFORMER_U_ONES`); it is opt-in, the
 * defaults treat blanks as negatives (the CheXpert convention, field notes §D).
 */
import { DataError } from '../data/errors.js';
import type { CxrRecord } from './types.js';

export type UncertainPolicy = 'ones' | 'zeros' | 'ignore';
export type BlankPolicy = 'zero' | 'ignore' | 'uncertain';
export type AbsentPolicy = 'ignore' | 'zero';

export interface LabelPolicy {
  /** Uncertain (−1) labels. */
  uncertain: UncertainPolicy;
  /** Blank (null, not mentioned) labels; 'uncertain' treats them as −1 (CXformer's quirk). */
  blank: BlankPolicy;
  /** Classes the record's labels do not contain. @default 'ignore' */
  absent?: AbsentPolicy;
  /** CheXpert's "No Finding = 1 ⇒ every class but Support Devices is 0" rule. @default false */
  noFindingRule?: boolean;
}

/** CXformer's CheXpert training labels: No Finding rule, −1 → 1 and blank → 1 (docs/recipe.md §5.1, §7.8). */
export const CXFORMER_U_ONES: Readonly<LabelPolicy> = { uncertain: 'ones', blank: 'uncertain', noFindingRule: true };
/** CXformer's U-ZEROS variant: No Finding rule, −1 → 0 and blank → 0. */
export const CXFORMER_U_ZEROS: Readonly<LabelPolicy> = { uncertain: 'zeros', blank: 'uncertain', noFindingRule: true };

/**
 * Default policy per dataset: CheXpert-labeller sources (CheXpert, MIMIC, BRAX) use U-Ones with blanks negative and
 * the No Finding rule; binary sources (NIH, VinDr, RSNA) have no −1 or blanks to speak of; PadChest lists only
 * positives, so an absent class is negative.
 */
export const DEFAULT_POLICIES: Readonly<Record<string, Readonly<LabelPolicy>>> = {
  chexpert: { uncertain: 'ones', blank: 'zero', noFindingRule: true },
  mimic: { uncertain: 'ones', blank: 'zero', noFindingRule: true },
  brax: { uncertain: 'ones', blank: 'zero', noFindingRule: true },
  nih: { uncertain: 'zeros', blank: 'zero' },
  vindr: { uncertain: 'zeros', blank: 'zero' },
  rsna: { uncertain: 'zeros', blank: 'zero' },
  padchest: { uncertain: 'zeros', blank: 'zero', absent: 'zero' },
  folder: { uncertain: 'ignore', blank: 'ignore' },
  csv: { uncertain: 'ignore', blank: 'ignore' },
};

const UNCERTAIN: readonly UncertainPolicy[] = ['ones', 'zeros', 'ignore'];
const BLANK: readonly BlankPolicy[] = ['zero', 'ignore', 'uncertain'];
const ABSENT: readonly AbsentPolicy[] = ['ignore', 'zero'];

/**
 * The default policy of a dataset with `overrides` on top.
 * @throws DataError on an unknown policy value
 */
export function resolvePolicy(dataset: string, overrides: Partial<LabelPolicy> = {}): LabelPolicy {
  const p: LabelPolicy = { ...(DEFAULT_POLICIES[dataset] ?? { uncertain: 'ignore', blank: 'ignore' }), ...overrides };
  if (!UNCERTAIN.includes(p.uncertain)) throw new DataError(`unknown uncertain-label policy '${String(p.uncertain)}' (expected ${UNCERTAIN.join(', ')})`);
  if (!BLANK.includes(p.blank)) throw new DataError(`unknown blank-label policy '${String(p.blank)}' (expected ${BLANK.join(', ')})`);
  if (p.absent !== undefined && !ABSENT.includes(p.absent)) throw new DataError(`unknown absent-label policy '${String(p.absent)}' (expected ${ABSENT.join(', ')})`);
  return p;
}

const NO_FINDING = 'No Finding';
const SUPPORT_DEVICES = 'Support Devices';

/**
 * The target and mask of one raw value under a policy.
 * @param value 1, 0, −1, null (blank) or undefined (absent)
 */
export function resolveLabel(value: number | null | undefined, policy: LabelPolicy): { target: number; mask: 0 | 1 } {
  if (value === undefined) return policy.absent === 'zero' ? { target: 0, mask: 1 } : { target: 0, mask: 0 };
  let v = value;
  if (v === null) {
    if (policy.blank === 'zero') return { target: 0, mask: 1 };
    if (policy.blank === 'ignore') return { target: 0, mask: 0 };
    v = -1;
  }
  if (v === 1) return { target: 1, mask: 1 };
  if (v === 0) return { target: 0, mask: 1 };
  if (v === -1) {
    if (policy.uncertain === 'ones') return { target: 1, mask: 1 };
    if (policy.uncertain === 'zeros') return { target: 0, mask: 1 };
    return { target: 0, mask: 0 };
  }
  throw new DataError(`label value ${v} is not 1, 0, -1 or blank`);
}

/** A record's labels after the No Finding rule: with 'No Finding' = 1, every other label but 'Support Devices' is 0. */
function noFindingLabels(labels: Record<string, number | null>): Record<string, number | null> {
  if (labels[NO_FINDING] !== 1) return labels;
  const out: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(labels)) out[k] = k === NO_FINDING || k === SUPPORT_DEVICES ? v : 0;
  return out;
}

/**
 * Applies the No Finding rule to the raw labels (new records; others are returned as they are). `labelTargets` does
 * this itself when `noFindingRule` is on; call it explicitly before `relabel`, which drops 'No Finding' unless it is
 * one of the target classes.
 */
export function applyNoFindingRule(records: readonly CxrRecord[]): CxrRecord[] {
  return records.map((r) => {
    const labels = noFindingLabels(r.labels);
    return labels === r.labels ? r : { ...r, labels };
  });
}

function effectiveLabels(r: CxrRecord, policy: LabelPolicy): Record<string, number | null> {
  return policy.noFindingRule ? noFindingLabels(r.labels) : r.labels;
}

/** Targets and masks, row-major N×C (row n = record n, column c = classes[c]). */
export interface LabelTargets {
  classes: string[];
  count: number;
  targets: Float32Array;
  mask: Uint8Array;
}

/**
 * Builds targets and masks for records over a class list. Each record's own dataset policy is not consulted: pass
 * the policy for these records (see `resolvePolicy`).
 * @throws DataError on an empty or repeated class list, or a label value other than 1, 0, −1, null
 */
export function labelTargets(records: readonly CxrRecord[], classes: readonly string[], policy: LabelPolicy): LabelTargets {
  if (classes.length === 0) throw new DataError('the class list is empty');
  const dup = classes.find((c, k) => classes.indexOf(c) !== k);
  if (dup !== undefined) throw new DataError(`class '${dup}' is listed twice`);
  const C = classes.length;
  const targets = new Float32Array(records.length * C);
  const mask = new Uint8Array(records.length * C);
  records.forEach((r, n) => {
    const labels = effectiveLabels(r, policy);
    for (let c = 0; c < C; c++) {
      const name = classes[c] as string;
      const v = Object.prototype.hasOwnProperty.call(labels, name) ? labels[name] : undefined;
      let res;
      try {
        res = resolveLabel(v, policy);
      } catch (e) {
        if (e instanceof DataError) throw new DataError(`${r.dataset} image '${r.id}', class '${name}': ${e.message}`);
        throw e;
      }
      targets[n * C + c] = res.target;
      mask[n * C + c] = res.mask;
    }
  });
  return { classes: [...classes], count: records.length, targets, mask };
}

/** Targets and mask of one record (length C). */
export function recordTargets(record: CxrRecord, classes: readonly string[], policy: LabelPolicy): { targets: Float32Array; mask: Uint8Array } {
  const t = labelTargets([record], classes, policy);
  return { targets: t.targets, mask: t.mask };
}
