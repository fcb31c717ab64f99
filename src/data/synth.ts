/**
 * The built-in phantom chest radiograph DATASET: labelled, segmented and reported synthetic PA radiographs,
 * deterministic from a seed (same seed, n and options → byte-identical files).
 *
 * Layout written into `out/`:
 * - `images/<id>.png`: 8-bit gray size×size phantoms (anatomy.ts), ids `P00001_01` (patient 1, image 1).
 * - `labels.csv`: `Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax,Patient,Split`,
 *   CheXpert-style cells: `1.0` positive, `0.0` negative, and, independently per finding cell, `-1.0` (uncertain) with
 *   probability `uncertainRate` and blank (not mentioned) with probability `blankRate`, replacing the true value.
 *   `No Finding` is `1.0` when the image has none of the findings, else `0.0`, and is never noised.
 *   `Split` (train/valid/test) is assigned per patient, so no patient is in two splits.
 * - `masks.csv`: `Path,Height,Width,Left Lung,Right Lung,Heart`, CheXmask RLE (1-based starts, row-major; docs/recipe.md §5.2).
 *   Left = the patient's left = the image right. The masks are the rendered structures' pixels (same membership tests).
 * - `reports.csv`: `Path,Findings`: one templated findings paragraph per image, consistent with the label cells
 *   (uncertain cells give hedged sentences, blank cells are not mentioned).
 * - `dataset.json`: seed, n, size, configured and observed prevalences, classes, label noise, splits, generator version.
 *
 * Findings as rendered (see anatomy.ts): Cardiomegaly = cardiothoracic ratio 0.55–0.66 (normal 0.39–0.46);
 * Pleural Effusion = fluid with a meniscus filling the costophrenic angle (small) or the lung base above the dome
 * (moderate), on one or both sides; Nodule = 1–3 projected spheres of 11–22 mm inside aerated lung; Pneumothorax =
 * the lung edge pulled 3–8 % of the image width from the lateral wall and down from the apex, the space darker and
 * without markings, a thin visceral pleural line at the lung edge.
 *
 * Streams: each patient and image draws from its own seeded stream (hashSeed(seed, stream, patient, image)), so the
 * first images of a run with a larger n are the same images; only the split assignment depends on n.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import {
  CARDIOMEGALY_CTR,
  type ChestGeometry,
  LABEL_HEART,
  LABEL_LEFT_LUNG,
  LABEL_RIGHT_LUNG,
  renderChest,
  sampleChest,
  samplePatientAnatomy,
  SIDE_NAMES,
  type Side,
  toImage,
} from './anatomy.js';
import { formatCsv } from './csv.js';
import { writeFileAtomic } from './fsutil.js';
import { encodeGrayPng } from './phantom.js';
import { hashSeed, mulberry32, randInt, shuffleInPlace } from './random.js';
import { rleEncodeLabel } from './rle.js';

export const SYNTH_GENERATOR = 'cxformer-synth';
export const SYNTH_VERSION = '1.0.0';

/** The finding classes, in label-column (and alphabetical) order. */
export const FINDINGS = ['Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'] as const;
export type Finding = (typeof FINDINGS)[number];

/** Default prevalence of each finding (drawn independently per image). "No Finding" comes out at about 41 %. */
export const DEFAULT_PREVALENCE: Readonly<Record<Finding, number>> = {
  Cardiomegaly: 0.25,
  'Pleural Effusion': 0.2,
  Nodule: 0.2,
  Pneumothorax: 0.15,
};

export const LABEL_HEADER = ['Path', 'Sex', 'Age', 'Frontal/Lateral', 'AP/PA', 'No Finding', ...FINDINGS, 'Patient', 'Split'] as const;
export const MASK_HEADER = ['Path', 'Height', 'Width', 'Left Lung', 'Right Lung', 'Heart'] as const;
export const REPORT_HEADER = ['Path', 'Findings'] as const;

export type Split = 'train' | 'valid' | 'test';

export interface SynthOptions {
  /** Output folder (created; files of an earlier run with the same names are replaced, others are left alone). */
  out: string;
  /** Number of images (≥ 1). */
  n: number;
  /** Seed (a safe integer). */
  seed: number;
  /** Image side in px (32–4096). @default 512 */
  size?: number;
  /** Prevalence of each finding, in [0, 1]. @default DEFAULT_PREVALENCE */
  prevalence?: Partial<Record<Finding, number>>;
  /** Probability that a finding cell is written `-1.0` (uncertain) instead of its truth. @default 0.03 */
  uncertainRate?: number;
  /** Probability that a finding cell is left blank (not mentioned) instead of its truth. @default 0.03 */
  blankRate?: number;
  /** Images per patient are drawn uniformly from 1..maxImagesPerPatient. @default 3 */
  maxImagesPerPatient?: number;
  /** Fractions of the patients in each split (normalised to sum 1). @default { train: 0.8, valid: 0.1, test: 0.1 } */
  splitFractions?: Partial<Record<Split, number>>;
  /** Called after each image is written. */
  onProgress?: (done: number, total: number) => void;
}

/** What was drawn for one image (the ground truth behind its label cells). */
export interface SynthImage {
  id: string;
  /** Path relative to `out/` (`images/<id>.png`). */
  path: string;
  patient: string;
  split: Split;
  sex: 'Male' | 'Female';
  age: number;
  /** True findings (what is in the pixels). */
  truth: Record<Finding, boolean>;
  /** The label cells as written for 'No Finding' and each finding ('1.0', '0.0', '-1.0' or ''). */
  cells: Record<'No Finding' | Finding, string>;
  report: string;
  /** Cardiothoracic ratio of the drawn heart (heart width / outer lung width, before rotation). */
  ctr: number;
  effusion: { side: 'left' | 'right'; size: 'small' | 'moderate' }[];
  /** Nodule centres and diameters in pixels: x to the right, y down from the top-left image corner (pixel (i, j) covers [i, i+1)×[j, j+1)). */
  nodules: { side: 'left' | 'right'; x: number; y: number; diameterPx: number }[];
  pneumothorax: { side: 'left' | 'right'; size: 'small' | 'large'; gapPx: number } | null;
}

export interface SynthInfo {
  generator: string;
  version: string;
  seed: number;
  n: number;
  size: number;
  patients: number;
  classes: string[];
  labelColumns: string[];
  prevalence: Record<Finding, number>;
  observed: Record<'No Finding' | Finding, number>;
  labelNoise: { uncertainRate: number; blankRate: number; note: string };
  splits: { fractions: Record<Split, number>; patients: Record<Split, number>; images: Record<Split, number> };
  maxImagesPerPatient: number;
  files: { images: string; labels: string; masks: string; reports: string };
  masks: { encoding: string; columns: string[]; note: string };
  findings: Record<Finding, string>;
}

export interface SynthResult {
  out: string;
  images: SynthImage[];
  info: SynthInfo;
}

// Stream ids of hashSeed(seed, stream, …).
const S_PATIENT = 1;
const S_POSE = 2;
const S_FINDINGS = 3;
const S_LABELS = 4;
const S_NOISE = 5;
const S_SPLIT = 6;

/** Field of view assumed for sizes in mm (a 43 cm detector). */
const FOV_MM = 430;

function checkRate(name: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new RangeError(`synthDataset: ${name} must be in [0, 1], got ${v}`);
}

function resolveOptions(o: SynthOptions) {
  if (!(Number.isSafeInteger(o.n) && o.n >= 1)) throw new RangeError(`synthDataset: n must be a positive integer, got ${o.n}`);
  if (!Number.isSafeInteger(o.seed)) throw new RangeError(`synthDataset: seed must be an integer, got ${o.seed}`);
  const size = o.size ?? 512;
  if (!(Number.isSafeInteger(size) && size >= 32 && size <= 4096)) throw new RangeError(`synthDataset: size must be an integer in 32..4096, got ${size}`);
  const prevalence = { ...DEFAULT_PREVALENCE, ...o.prevalence } as Record<Finding, number>;
  for (const f of FINDINGS) checkRate(`prevalence of ${f}`, prevalence[f]);
  for (const k of Object.keys(o.prevalence ?? {})) {
    if (!(FINDINGS as readonly string[]).includes(k)) throw new RangeError(`synthDataset: unknown finding '${k}' in prevalence (known: ${FINDINGS.join(', ')})`);
  }
  const uncertainRate = o.uncertainRate ?? 0.03;
  const blankRate = o.blankRate ?? 0.03;
  checkRate('uncertainRate', uncertainRate);
  checkRate('blankRate', blankRate);
  if (uncertainRate + blankRate > 1) throw new RangeError(`synthDataset: uncertainRate + blankRate must be at most 1, got ${uncertainRate + blankRate}`);
  const maxImagesPerPatient = o.maxImagesPerPatient ?? 3;
  if (!(Number.isSafeInteger(maxImagesPerPatient) && maxImagesPerPatient >= 1)) {
    throw new RangeError(`synthDataset: maxImagesPerPatient must be a positive integer, got ${maxImagesPerPatient}`);
  }
  const fr = { train: 0.8, valid: 0.1, test: 0.1, ...o.splitFractions };
  for (const k of ['train', 'valid', 'test'] as const) {
    if (!(Number.isFinite(fr[k]) && fr[k] >= 0)) throw new RangeError(`synthDataset: splitFractions.${k} must be >= 0, got ${fr[k]}`);
  }
  const total = fr.train + fr.valid + fr.test;
  if (!(total > 0)) throw new RangeError('synthDataset: splitFractions must not all be 0');
  const fractions: Record<Split, number> = { train: fr.train / total, valid: fr.valid / total, test: fr.test / total };
  return { size, prevalence, uncertainRate, blankRate, maxImagesPerPatient, fractions };
}

/** Assigns splits to patients: a seeded shuffle, then valid and test take round(fraction·P) patients each (at least one when their fraction is > 0 and P ≥ 3). */
function assignSplits(patients: number, seed: number, fractions: Record<Split, number>): Split[] {
  const order = shuffleInPlace(
    Array.from({ length: patients }, (_, i) => i),
    mulberry32(hashSeed(seed, S_SPLIT, patients)),
  );
  const count = (f: number) => (f > 0 && patients >= 3 ? Math.max(1, Math.round(f * patients)) : Math.round(f * patients));
  let nValid = count(fractions.valid);
  let nTest = count(fractions.test);
  if (fractions.train > 0) {
    // keep at least one training patient
    while (nValid + nTest > patients - 1 && (nValid > 0 || nTest > 0)) {
      if (nTest >= nValid && nTest > 0) nTest--;
      else nValid--;
    }
  }
  const split = new Array<Split>(patients).fill('train');
  order.forEach((p, k) => {
    if (k < nValid) split[p] = 'valid';
    else if (k < nValid + nTest) split[p] = 'test';
  });
  return split;
}

const COUNT_WORDS = ['No', 'One', 'Two', 'Three', 'Four'];

function zone(g: ChestGeometry, side: Side, v: number): string {
  const L = g.lungs[side];
  const q = (v - L.top) / (L.cpV - L.top);
  return q < 1 / 3 ? 'upper' : q < 2 / 3 ? 'mid' : 'lower';
}

/** The findings paragraph: heart, nodules, pleura (effusion, pneumothorax); blank cells are not mentioned. */
function buildReport(g: ChestGeometry, cells: Record<'No Finding' | Finding, string>): string {
  const out: string[] = [];
  const c = cells;
  if (c.Cardiomegaly === '1.0') out.push('The heart is enlarged.');
  else if (c.Cardiomegaly === '0.0') out.push('The heart size is normal.');
  else if (c.Cardiomegaly === '-1.0') out.push('The heart size is borderline.');

  if (c.Nodule === '1.0') {
    const mm = (r: number) => Math.round(2 * r * FOV_MM);
    const where = g.nodules.map((nd) => `the ${SIDE_NAMES[nd.side]} ${zone(g, nd.side, nd.v)} zone`);
    const [first] = g.nodules;
    if (g.nodules.length === 1 && first) out.push(`${/^(8|11|18)(\d\d)*$/.test(String(mm(first.r))) ? 'An' : 'A'} ${mm(first.r)} mm nodule in ${where[0]}.`);
    else {
      const parts = g.nodules.map((nd, k) => `${mm(nd.r)} mm in ${where[k]}`);
      const list = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}` : parts.join('');
      out.push(`${COUNT_WORDS[g.nodules.length] ?? g.nodules.length} nodules: ${list}.`);
    }
  } else if (c.Nodule === '0.0') out.push('No pulmonary nodule.');
  else if (c.Nodule === '-1.0') out.push('A possible nodular opacity, indeterminate.');

  if (c['Pleural Effusion'] === '1.0') {
    const [r, l] = g.effusion;
    if (r && l) {
      out.push(r.size === l.size ? `${cap(r.size)} bilateral pleural effusions.` : `${cap(r.size)} right and ${l.size} left pleural effusions.`);
    } else {
      const e = r ?? l;
      out.push(`${cap(e?.size ?? 'small')} ${r ? 'right' : 'left'} pleural effusion.`);
    }
  } else if (c['Pleural Effusion'] === '0.0') out.push('No pleural effusion.');
  else if (c['Pleural Effusion'] === '-1.0') out.push('Possible small pleural effusion.');

  if (c.Pneumothorax === '1.0') {
    const s: Side = g.pneumothorax[0] ? 0 : 1;
    const p = g.pneumothorax[s];
    out.push(p?.size === 'large' ? `Large ${SIDE_NAMES[s]} pneumothorax.` : `Small ${SIDE_NAMES[s]} apical pneumothorax.`);
  } else if (c.Pneumothorax === '0.0') out.push('No pneumothorax.');
  else if (c.Pneumothorax === '-1.0') out.push('A small pneumothorax cannot be excluded.');

  if (c['No Finding'] === '1.0' && !FINDINGS.some((f) => c[f] === '-1.0')) out.push('No acute cardiopulmonary abnormality.');
  return out.join(' ');
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** One image, drawn: geometry and metadata (rendering is separate). */
interface Drawn {
  image: SynthImage;
  geometry: ChestGeometry;
  noiseSeed: number;
}

function drawImage(
  seed: number,
  p: number,
  k: number,
  patient: { id: string; sex: 'Male' | 'Female'; age: number; anatomy: ReturnType<typeof samplePatientAnatomy> },
  opts: ReturnType<typeof resolveOptions>,
): Drawn {
  const rndF = mulberry32(hashSeed(seed, S_FINDINGS, p, k));
  const truth = {} as Record<Finding, boolean>;
  for (const f of FINDINGS) truth[f] = rndF() < opts.prevalence[f];
  const g = sampleChest(patient.anatomy, mulberry32(hashSeed(seed, S_POSE, p, k)), rndF, {
    cardiomegaly: truth.Cardiomegaly,
    effusion: truth['Pleural Effusion'],
    nodule: truth.Nodule,
    pneumothorax: truth.Pneumothorax,
  });
  const rndL = mulberry32(hashSeed(seed, S_LABELS, p, k));
  const none = !FINDINGS.some((f) => truth[f]);
  const cells = { 'No Finding': none ? '1.0' : '0.0' } as Record<'No Finding' | Finding, string>;
  for (const f of FINDINGS) {
    const r = rndL();
    cells[f] = r < opts.uncertainRate ? '-1.0' : r < opts.uncertainRate + opts.blankRate ? '' : truth[f] ? '1.0' : '0.0';
  }
  const id = `${patient.id}_${String(k + 1).padStart(2, '0')}`;
  const n = opts.size;
  const [rl, ll] = g.lungs;
  const image: SynthImage = {
    id,
    path: `images/${id}.png`,
    patient: patient.id,
    split: 'train',
    sex: patient.sex,
    age: patient.age,
    truth,
    cells,
    report: buildReport(g, cells),
    ctr: (2 * Math.sqrt(g.heart.a ** 2 * Math.cos(g.heart.tilt) ** 2 + g.heart.b ** 2 * Math.sin(g.heart.tilt) ** 2)) / (rl.lmax + ll.lmax),
    effusion: ([0, 1] as const).flatMap((s) => {
      const e = g.effusion[s];
      return e ? [{ side: SIDE_NAMES[s], size: e.size }] : [];
    }),
    nodules: g.nodules.map((nd) => {
      const q = toImage(g, nd.u, nd.v);
      return { side: SIDE_NAMES[nd.side], x: q.x * n, y: q.y * n, diameterPx: 2 * nd.r * n };
    }),
    pneumothorax: null,
  };
  ([0, 1] as const).forEach((s) => {
    const ptx = g.pneumothorax[s];
    if (ptx) image.pneumothorax = { side: SIDE_NAMES[s], size: ptx.size, gapPx: ptx.gap * n };
  });
  return { image, geometry: g, noiseSeed: hashSeed(seed, S_NOISE, p, k) };
}

/**
 * Generates the phantom dataset into `opts.out` (see the module comment for the layout).
 * Each file is written to a temporary name and renamed; the CSVs and dataset.json are written last.
 */
export async function synthDataset(opts: SynthOptions): Promise<SynthResult> {
  const o = resolveOptions(opts);
  const out = path.resolve(opts.out);
  const { n } = opts;
  const seed = opts.seed;
  const size = o.size;

  // 1. Patients and their images (each from its own stream).
  const drawn: Drawn[] = [];
  const patientOf: number[] = [];
  let patients = 0;
  while (drawn.length < n) {
    const p = patients++;
    const rnd = mulberry32(hashSeed(seed, S_PATIENT, p));
    const female = rnd() < 0.5;
    const patient = {
      id: `P${String(p + 1).padStart(5, '0')}`,
      sex: female ? ('Female' as const) : ('Male' as const),
      age: randInt(rnd, 18, 90),
      anatomy: samplePatientAnatomy(rnd, female),
    };
    const count = randInt(rnd, 1, o.maxImagesPerPatient);
    for (let k = 0; k < count && drawn.length < n; k++) {
      drawn.push(drawImage(seed, p, k, patient, o));
      patientOf.push(p);
    }
  }

  // 2. Splits by patient.
  const splits = assignSplits(patients, seed, o.fractions);
  drawn.forEach((d, k) => {
    d.image.split = splits[patientOf[k] as number] as Split;
  });

  // 3. Render, encode and write the images (rendering here, PNG encoding in sharp's threads, a few in flight).
  await mkdir(path.join(out, 'images'), { recursive: true });
  const maskRows: string[][] = [];
  const inFlight: Promise<void>[] = [];
  let done = 0;
  for (const d of drawn) {
    const { pixels, labels } = renderChest(d.geometry, size, mulberry32(d.noiseSeed));
    maskRows.push([
      d.image.path,
      String(size),
      String(size),
      rleEncodeLabel(labels, size, size, LABEL_LEFT_LUNG),
      rleEncodeLabel(labels, size, size, LABEL_RIGHT_LUNG),
      rleEncodeLabel(labels, size, size, LABEL_HEART),
    ]);
    const file = path.join(out, ...d.image.path.split('/'));
    inFlight.push(
      encodeGrayPng(pixels, size)
        .then((png) => writeFileAtomic(file, png))
        .then(() => opts.onProgress?.(++done, n)),
    );
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);

  // 4. Tables and the dataset description.
  const images = drawn.map((d) => d.image);
  const labelRows = images.map((im) => [
    im.path,
    im.sex,
    String(im.age),
    'Frontal',
    'PA',
    im.cells['No Finding'],
    ...FINDINGS.map((f) => im.cells[f]),
    im.patient,
    im.split,
  ]);
  await writeFileAtomic(path.join(out, 'labels.csv'), formatCsv(LABEL_HEADER, labelRows));
  await writeFileAtomic(path.join(out, 'masks.csv'), formatCsv(MASK_HEADER, maskRows));
  await writeFileAtomic(path.join(out, 'reports.csv'), formatCsv(REPORT_HEADER, images.map((im) => [im.path, im.report])));

  const observed = { 'No Finding': 0 } as Record<'No Finding' | Finding, number>;
  for (const f of FINDINGS) observed[f] = images.filter((im) => im.truth[f]).length;
  observed['No Finding'] = images.filter((im) => !FINDINGS.some((f) => im.truth[f])).length;
  const bySplit = (list: Split[]) => ({
    train: list.filter((s) => s === 'train').length,
    valid: list.filter((s) => s === 'valid').length,
    test: list.filter((s) => s === 'test').length,
  });
  const info: SynthInfo = {
    generator: SYNTH_GENERATOR,
    version: SYNTH_VERSION,
    seed,
    n,
    size,
    patients,
    classes: [...FINDINGS],
    labelColumns: ['No Finding', ...FINDINGS],
    prevalence: o.prevalence,
    observed,
    labelNoise: {
      uncertainRate: o.uncertainRate,
      blankRate: o.blankRate,
      note:
        "Each finding cell is independently written '-1.0' (uncertain) with probability uncertainRate or left blank with probability blankRate, " +
        "whatever the truth; 'No Finding' is exact. 'observed' counts the true findings.",
    },
    splits: { fractions: o.fractions, patients: bySplit(splits), images: bySplit(images.map((im) => im.split)) },
    maxImagesPerPatient: o.maxImagesPerPatient,
    files: { images: 'images/', labels: 'labels.csv', masks: 'masks.csv', reports: 'reports.csv' },
    masks: {
      encoding: 'CheXmask RLE: space-separated (start, length) pairs, 1-based starts over the row-major flattened Height×Width image',
      columns: ['Left Lung', 'Right Lung', 'Heart'],
      note: "Left/right are the patient's (PA view: the left lung is on the image right). Lungs are the lung fields (pleural spaces included, heart and mediastinum excluded); masks do not overlap.",
    },
    findings: {
      Cardiomegaly: `cardiothoracic ratio ${CARDIOMEGALY_CTR[0]}–${CARDIOMEGALY_CTR[1]} (normal 0.39–0.46)`,
      'Pleural Effusion': 'fluid with a lateral meniscus: small (costophrenic angle blunted) or moderate (lung base and dome obscured); one or both sides',
      Nodule: '1–3 round opacities (projected spheres, 11–22 mm at a 43 cm field of view) inside aerated lung',
      Pneumothorax: 'one side: lung edge pulled from the lateral wall and apex (small or large), a darker space without markings, a visceral pleural line',
    },
  };
  await writeFileAtomic(path.join(out, 'dataset.json'), `${JSON.stringify(info, null, 2)}\n`);
  return { out, images, info };
}
