/**
 * The record every dataset adapter produces: one image, its patient, view, demographics and the labels exactly as
 * the source states them. Label policies (uncertain / blank handling) are applied later, in `policy.ts`.
 */

/** Official or derived split of a record. */
export type Split = 'train' | 'valid' | 'test';

/** All splits, in order. */
export const SPLITS: readonly Split[] = ['train', 'valid', 'test'];

/** Anatomical segmentation masks of one image (CheXmask, docs/recipe.md §5.2), still run-length encoded. */
export interface CxrMasks {
  /** Mask height in pixels (the original image height for CheXmask `OriginalResolution`). */
  height: number;
  /** Mask width in pixels. */
  width: number;
  /** Structure name (e.g. 'Left Lung', 'Right Lung', 'Heart') → CheXmask RLE string (decode with `rleDecode`). */
  rle: Record<string, string>;
}

/** One chest X-ray image of a dataset. */
export interface CxrRecord {
  /**
   * Stable image id, unique within the dataset and equal to the key other files use for the image:
   * CheXpert: `Path` relative to the dataset folder (`train/patient00001/study1/view1_frontal.jpg`);
   * MIMIC-CXR-JPG: `dicom_id`; NIH: `Image Index`; PadChest: `ImageID`; BRAX: the path column;
   * VinDr-CXR: `image_id`; RSNA: `patientId`.
   */
  id: string;
  /** Adapter name ('chexpert', 'mimic', 'nih', 'padchest', 'brax', 'vindr', 'rsna', 'folder', 'csv'). */
  dataset: string;
  /** Absolute image path. */
  path: string;
  /** Patient id (for datasets without one, such as VinDr-CXR, the image id). */
  patient: string;
  /** Study id, where the source has one. */
  study?: string;
  /**
   * View, normalised by `normalizeView`: 'PA' | 'AP' | 'AP Supine' | 'LATERAL' | 'LL' | 'FRONTAL' (frontal, AP/PA
   * unknown) | any other raw value, trimmed. Undefined when the source does not say.
   */
  view?: string;
  /** 'M' | 'F' | 'O' where recognised, else the raw value. */
  sex?: string;
  /** Age in years. */
  age?: number;
  /**
   * Labels as the source states them: 1 positive, 0 negative, −1 uncertain, null blank (not mentioned).
   * A class missing from the object is "not stated by this source" (see `LabelPolicy.absent`).
   */
  labels: Record<string, number | null>;
  /** Official split, or one assigned by `assignSplits`. */
  split?: Split;
  /** Segmentation masks (CheXmask join). */
  masks?: CxrMasks;
}

type Optional = 'study' | 'view' | 'sex' | 'age' | 'split';

/**
 * A record from an adapter's parsed fields: optional fields that are undefined, and an empty study, are left out,
 * so records compare and serialise without `undefined` keys.
 */
export function cxrRecord(r: Omit<CxrRecord, Optional> & { [K in Optional]?: CxrRecord[K] | undefined }): CxrRecord {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (v !== undefined && !(k === 'study' && v === '')) out[k] = v;
  return out as unknown as CxrRecord;
}

/** Options every adapter takes. */
export interface AdapterOptions {
  /**
   * Check that every image file exists: `true` throws a DataError listing the missing files (count and the first
   * few), `'drop'` drops those records. Off by default: listing hundreds of thousands of files is slow, and the
   * label files are often used without the images (e.g. to plan splits).
   * @default false
   */
  checkFiles?: boolean | 'drop';
  /**
   * Replace each image path's extension (with the dot, e.g. '.jpg'), for datasets converted after download
   * (CXformer converted every source to JPEG, docs/recipe.md §4 step 0). Ids are not changed.
   */
  imageExt?: string;
}
