/**
 * Segmentation data (docs/recipe.md §5.2): records with CheXmask masks, decoded into class maps and brought to the model's
 * input size together with their image.
 *
 * - **Records.** Any dataset of src/datasets (its records give the image path, patient and split) joined to a
 *   CheXmask table on the record id (`loadChexmask`): the official per-source tables (MIMIC `dicom_id`, …) or, for
 *   a CSV manifest, any CheXmask-style table keyed by the manifest's path cell (source `csv`, e.g. the phantom
 *   dataset's `masks.csv` from `cxformer synth`). Rows with a missing structure are dropped.
 * - **Class map** ({@link classMap}): 0 background, 1 left lung, 2 right lung, 3 heart, painted in that order so
 *   that later classes overwrite earlier ones (docs/recipe.md §5.2). "Left" is the patient's left, on the image right of a PA
 *   view (CheXmask's and the phantom's convention).
 * - **Geometry.** The image goes through the evaluation preprocessing of src/image (gray, optional histogram
 *   equalisation, shorter-side resize with PIL bicubic, centre crop); the class map follows with **nearest**
 *   resampling and the same crop. Masks stored at another resolution than the image (a downsampled copy of the
 *   dataset) are first resized to the image with nearest when the aspect ratio agrees within 1 %, else rejected.
 *   The geometry is kept per sample so predictions can be mapped back to the original resolution
 *   ({@link toOriginal}).
 */
import { loadChexmask, loadDataset, type ChexmaskSource, type CxrRecord, type DatasetSpec, type Split } from '../datasets/index.js';
import { DataError } from '../data/errors.js';
import { rleDecode, rleEncodeLabel } from '../data/rle.js';
import { decodeImage } from '../image/decode.js';
import { equalizeHist } from '../image/equalize.js';
import { grayPlane8 } from '../image/gray.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { centerCropOffsets, resizePlane, shorterSideSize } from '../image/resize.js';

/** CheXmask structure columns in class order 1..3 (docs/recipe.md §5.2). */
export const SEG_STRUCTURES = ['Left Lung', 'Right Lung', 'Heart'] as const;
/** Class names 1..3 as reported. */
export const SEG_CLASS_NAMES = ['left lung', 'right lung', 'heart'] as const;
/** Number of classes including background. */
export const SEG_NUM_CLASSES = 4;

export interface MaskSource {
  /** Which CheXmask table: a source dataset's official table, or `csv` for a table keyed by manifest paths. */
  source: ChexmaskSource;
  /** The CheXmask root folder (official tables), or the folder the `csv` path is relative to. */
  root: string;
  /** The table file (relative to `root`), default by source (CHEXMASK_FILES). */
  csv?: string;
  /** Id column, default by source. */
  idColumn?: string;
  /** Keep rows with `Dice RCA (Mean)` ≥ this (CheXmask's quality score; CXformer used none). */
  minDiceRca?: number;
}

/** Records with masks, by split. Records without a split count as train. */
export interface SegRecords {
  all: CxrRecord[];
  train: CxrRecord[];
  valid: CxrRecord[];
  test: CxrRecord[];
}

/** Loads the dataset and joins the masks. @throws DataError when no record has a mask. */
export async function loadSegRecords(spec: DatasetSpec, masks: MaskSource): Promise<SegRecords> {
  const ds = await loadDataset(spec);
  const all = await loadChexmask(masks.root, {
    source: masks.source,
    records: ds.records,
    structures: [...SEG_STRUCTURES],
    ...(masks.csv !== undefined ? { csv: masks.csv } : {}),
    ...(masks.idColumn !== undefined ? { idColumn: masks.idColumn } : {}),
    ...(masks.minDiceRca !== undefined ? { minDiceRca: masks.minDiceRca } : {}),
  });
  if (all.length === 0) {
    const eg = ds.records.slice(0, 3).map((r) => `'${r.id}'`).join(', ');
    throw new DataError(
      `no record of dataset '${spec.name}' (${ds.records.length} records, ids such as ${eg || 'none'}) has a complete mask row in the ${masks.source} CheXmask table under ${masks.root}; check that the table's id column matches the record ids`,
    );
  }
  const by = (s: Split | undefined) => all.filter((r) => (r.split ?? 'train') === (s ?? 'train'));
  return { all, train: by('train'), valid: by('valid'), test: by('test') };
}

/** Decodes a record's RLE masks into the class map (H×W, row-major) of docs/recipe.md §5.2. */
export function classMap(masks: NonNullable<CxrRecord['masks']>, what = 'mask'): Uint8Array {
  const { height: h, width: w } = masks;
  const out = new Uint8Array(h * w);
  SEG_STRUCTURES.forEach((name, k) => {
    const rle = masks.rle[name];
    if (rle === undefined) throw new DataError(`${what}: no '${name}' RLE (structures found: ${Object.keys(masks.rle).join(', ')})`);
    let bin: Uint8Array;
    try {
      bin = rleDecode(rle, h, w);
    } catch (e) {
      throw new DataError(`${what}, '${name}': ${(e as Error).message}`);
    }
    for (let i = 0; i < bin.length; i++) if (bin[i]) out[i] = k + 1;
  });
  return out;
}

/** CheXmask-style RLE strings of a class map, one per structure (classes 1..3). */
export function classMapToRle(map: Uint8Array, h: number, w: number): Record<(typeof SEG_STRUCTURES)[number], string> {
  return {
    'Left Lung': rleEncodeLabel(map, h, w, 1),
    'Right Lung': rleEncodeLabel(map, h, w, 2),
    Heart: rleEncodeLabel(map, h, w, 3),
  };
}

/** How an original image was mapped to the model input (to map predictions back). */
export interface Geometry {
  /** Original (image) size. */
  width: number;
  height: number;
  /** Size after the resize (before the crop). */
  resizedWidth: number;
  resizedHeight: number;
  /** Crop window in the resized image. */
  left: number;
  top: number;
  /** Model input size. */
  outWidth: number;
  outHeight: number;
}

/** One sample at the model's input size. */
export interface SegSample {
  id: string;
  patient: string;
  /** 8-bit gray image, outHeight×outWidth. */
  image: Uint8Array;
  /** Class map, same size (undefined for images without masks). */
  mask?: Uint8Array;
  geometry: Geometry;
}

/** Nearest resize of a label plane (PIL semantics, as src/image/resize.ts). */
export function resizeLabels(map: Uint8Array, w: number, h: number, ow: number, oh: number): Uint8Array {
  if (w === ow && h === oh) return map.slice();
  return Uint8Array.from(resizePlane(Float32Array.from(map), w, h, ow, oh, { filter: 'nearest' }));
}

function crop(plane: Uint8Array, w: number, left: number, top: number, cw: number, ch: number): Uint8Array {
  const out = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) out.set(plane.subarray((top + y) * w + left, (top + y) * w + left + cw), y * cw);
  return out;
}

/**
 * Loads one record: image and class map at the model's input size.
 * @throws DataError / ImageError naming the record for unreadable images, bad RLE, or masks that do not fit the image
 */
export async function loadSample(r: CxrRecord, pre: Partial<PreprocessOptions>): Promise<SegSample> {
  const o = resolvePreprocessOptions(pre);
  const img = await decodeImage(r.path);
  let gray = grayPlane8(img);
  if (o.equalize) gray = equalizeHist(gray);
  const { width: W, height: H } = img;
  let mask: Uint8Array | undefined;
  if (r.masks !== undefined) {
    const what = `mask of '${r.id}'`;
    mask = classMap(r.masks, what);
    const { width: mw, height: mh } = r.masks;
    if (mw !== W || mh !== H) {
      if (Math.abs(mw / mh - W / H) > 0.01 * (W / H)) {
        throw new DataError(`${what} is ${mw}×${mh} (width×height) but the image ${r.path} is ${W}×${H}: the aspect ratios differ, so the mask does not belong to this image`);
      }
      mask = resizeLabels(mask, mw, mh, W, H);
    }
  }
  let w = W;
  let h = H;
  let plane: Uint8Array = gray;
  if (o.resize !== null) {
    const s = typeof o.resize === 'number' ? shorterSideSize(w, h, o.resize) : { height: o.resize[0], width: o.resize[1] };
    if (s.width !== w || s.height !== h) {
      plane = Uint8Array.from(resizePlane(Float32Array.from(plane), w, h, s.width, s.height, { filter: o.resample, roundToUint8: true }));
      if (mask) mask = resizeLabels(mask, w, h, s.width, s.height);
    }
    w = s.width;
    h = s.height;
  }
  const rw = w;
  const rh = h;
  let left = 0;
  let top = 0;
  if (o.crop !== null) {
    const [ch, cw] = typeof o.crop === 'number' ? [o.crop, o.crop] : o.crop;
    if (cw > w || ch > h) throw new DataError(`image ${r.path} (${W}×${H}, ${w}×${h} after resizing) is smaller than the crop ${cw}×${ch}; lower "crop" or raise "resize"`);
    ({ left, top } = centerCropOffsets(w, h, cw, ch, o.cropRounding));
    plane = crop(plane, w, left, top, cw, ch);
    if (mask) mask = crop(mask, w, left, top, cw, ch);
    w = cw;
    h = ch;
  }
  return {
    id: r.id,
    patient: r.patient,
    image: plane,
    ...(mask ? { mask } : {}),
    geometry: { width: W, height: H, resizedWidth: rw, resizedHeight: rh, left, top, outWidth: w, outHeight: h },
  };
}

/** Loads many records (up to 4 in flight), in order. */
export async function loadSamples(records: readonly CxrRecord[], pre: Partial<PreprocessOptions>, onProgress?: (done: number, total: number) => void): Promise<SegSample[]> {
  const out: SegSample[] = new Array(records.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < records.length) {
      const k = next++;
      out[k] = await loadSample(records[k]!, pre);
      onProgress?.(++done, records.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, records.length) }, worker));
  return out;
}

/**
 * Maps a class map at the model's input size back to the original image: the crop is pasted into the resized
 * frame (pixels outside the crop, which the model never saw, are background) and resized to the original size
 * with nearest.
 */
export function toOriginal(map: Uint8Array, g: Geometry): Uint8Array {
  const frame = new Uint8Array(g.resizedWidth * g.resizedHeight);
  for (let y = 0; y < g.outHeight; y++) frame.set(map.subarray(y * g.outWidth, (y + 1) * g.outWidth), (g.top + y) * g.resizedWidth + g.left);
  return resizeLabels(frame, g.resizedWidth, g.resizedHeight, g.width, g.height);
}

/** The record id as a safe file name (path separators and odd characters replaced). */
export function fileStem(id: string): string {
  const base = id.replace(/\.(png|jpe?g|dcm|dicom)$/i, '');
  return base.replace(/[\\/]+/g, '__').replace(/[^A-Za-z0-9._-]/g, '_') || 'image';
}
