/**
 * VinDr-CXR 1.0.0 (PhysioNet) as downloaded:
 *   annotations/image_labels_train.csv  image_id, rad_id, then the image-level labels (0/1), one row per reader:
 *                                       each training image was read by 3 radiologists
 *   annotations/image_labels_test.csv   image_id and the labels: the consensus of 5 radiologists, one row per image
 *   train/<image_id>.dicom, test/<image_id>.dicom
 * Every column other than image_id and rad_id is taken as a label (the 28 of `VINDR_28`), so the adapter does not
 * depend on the exact label spelling. Readers are aggregated per image by majority vote, ties → 0 (docs/recipe.md §5.1; CXformer
 * uses pandas mode(), whose first value is the smaller on a tie). The release is postero-anterior only, so every view
 * is 'PA'. VinDr has no patient id: each image is its own patient.
 *
 * Confirmed: the 28 label names (CXformer's loader, the dataset paper's 22 local + 6 global labels), 3 readers per
 * training image and 5-reader consensus for test, PA only (vindr.ai). UNVERIFIED: the `annotations/` sub-folder and
 * the `.dicom` extension were not confirmed from the PhysioNet file listing; the label files are also looked for at
 * the root, and `imageExt` changes the extension.
 *
 * Note (docs/recipe.md §7.9): CXformer validates on the training file. Load `splits: ['train']` again for that; this adapter
 * does not duplicate records under 'valid' (ids would repeat).
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { finishRecords, majorityVote, parseBinaryCell } from './common.js';
import { findFile, requireColumns, scanTable } from './table.js';
import type { AdapterOptions, CxrRecord, Split } from './types.js';

export interface VindrOptions extends AdapterOptions {
  /** @default 'annotations/image_labels_train.csv' (or at the root) */
  trainCsv?: string;
  /** @default 'annotations/image_labels_test.csv' (or at the root) */
  testCsv?: string;
  /** Splits to load ('train', 'test'). Default: those whose file exists (at least one must). */
  splits?: Split[];
}

/**
 * Loads VinDr-CXR with per-image labels (majority vote over readers).
 * @throws DataError for a missing file or column, a label other than 0/1/blank, or a test image listed twice
 */
export async function loadVindr(root: string, opts: VindrOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const files: [Split, string[]][] = [
    ['train', opts.trainCsv !== undefined ? [opts.trainCsv] : ['annotations/image_labels_train.csv', 'image_labels_train.csv']],
    ['test', opts.testCsv !== undefined ? [opts.testCsv] : ['annotations/image_labels_test.csv', 'image_labels_test.csv']],
  ];
  const wanted = new Set<Split>(opts.splits ?? ['train', 'test']);
  for (const s of wanted) if (s === 'valid') throw new DataError("VinDr-CXR has no official 'valid' split (CXformer validates on 'train', docs/recipe.md §7.9)");
  const records: CxrRecord[] = [];
  let loaded = 0;
  for (const [split, candidates] of files) {
    if (!wanted.has(split)) continue;
    const file = await findFile(base, candidates, `VinDr-CXR ${split} labels`, opts.splits !== undefined);
    if (file === undefined) continue;
    loaded++;
    let cId = 0;
    let cRad: number | undefined;
    let labelCols: [string, number][] = [];
    // image_id → votes per label (in label column order), and the reader ids seen
    const votes = new Map<string, { rows: (number | null)[][]; readers: Set<string>; line: number }>();
    await scanTable(
      file,
      (h) => {
        [cId] = requireColumns(h, ['image_id'], `VinDr-CXR's ${path.basename(file)}`) as [number];
        cRad = h.index.get('rad_id');
        labelCols = h.header.map((name, k): [string, number] => [name, k]).filter(([name]) => name !== 'image_id' && name !== 'rad_id' && !name.startsWith('Unnamed: '));
        if (labelCols.length === 0) throw new DataError("no label columns besides 'image_id' and 'rad_id'", { file: h.file, line: 1 });
      },
      (cells, line, row) => {
        const id = (cells[cId] as string).trim();
        if (id === '') throw new DataError('empty image_id', { file, line, row, column: 'image_id' });
        const rad = cRad === undefined ? '' : (cells[cRad] as string).trim();
        let entry = votes.get(id);
        if (entry === undefined) {
          entry = { rows: [], readers: new Set(), line };
          votes.set(id, entry);
        } else if (cRad === undefined) {
          throw new DataError(`image '${id}' appears twice (first at line ${entry.line}) in a file without a 'rad_id' column`, { file, line, row, column: 'image_id' });
        } else if (rad !== '' && entry.readers.has(rad)) {
          throw new DataError(`reader '${rad}' labels image '${id}' twice (first at line ${entry.line})`, { file, line, row, column: 'rad_id' });
        }
        if (rad !== '') entry.readers.add(rad);
        entry.rows.push(labelCols.map(([name, k]) => parseBinaryCell(cells[k] as string, { file, line, row, column: name })));
      },
    );
    const dir = path.join(base, split);
    for (const [id, entry] of votes) {
      const labels: Record<string, number | null> = {};
      labelCols.forEach(([name], j) => {
        labels[name] = majorityVote(entry.rows.map((r) => r[j] as number | null));
      });
      records.push({ id, dataset: 'vindr', path: path.join(dir, `${id}.dicom`), patient: id, view: 'PA', labels, split });
    }
  }
  if (loaded === 0) throw new DataError(`no VinDr-CXR label file found under ${base} (looked for annotations/image_labels_{train,test}.csv)`);
  return finishRecords(records, opts, 'VinDr-CXR');
}
