/**
 * CheXmask (PhysioNet, chexmask-cxr-segmentation-data) joined to the records of its source dataset (docs/recipe.md §5.2).
 *
 * One table per source under `OriginalResolution/` (masks at the source image's resolution):
 *   MIMIC-CXR-JPG.csv  id column `dicom_id`      ChestX-Ray8.csv  id column `Image Index`
 *   CheXpert.csv       id column `Path`          Padchest.csv     id column `ImageID`
 *   VinDr-CXR.csv      id column `image_id`
 * then `Dice RCA (Max)`, `Dice RCA (Mean)`, `Landmarks`, `Left Lung`, `Right Lung`, `Heart` (RLE strings: 1-based
 * starts, row-major, see src/data/rle.ts), `Height`, `Width`. Column order varies between files; columns are found by
 * name. The tables may be `.csv` or `.csv.gz`.
 *
 * The join is inner, on the record id (MIMIC dicom_id, CheXpert relative Path, NIH Image Index, PadChest ImageID,
 * VinDr image_id); rows whose source image is not among the given records are skipped while streaming, so only the
 * masks of those records are kept in memory (the full MIMIC table is several GB). Rows with a blank structure cell
 * are dropped (as CXformer's dropna). Landmarks are not kept.
 *
 * Confirmed: the column list (PhysioNet README and data dictionary), the id columns of MIMIC (CXformer's join on
 * dicom_id), CheXpert ('Path' without the dataset folder prefix), ChestX-Ray8 ('Image Index'), Padchest ('ImageID')
 * and VinDr ('image_id') (the CheXmask repository's sample tables and scripts). UNVERIFIED: the exact file names of
 * the current PhysioNet version (the v0.4 name `OriginalResolution/MIMIC-CXR-JPG.csv` is from CXformer's config).
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { chexpertRelativePath } from './chexpert.js';
import { CHEXMASK_STRUCTURES } from './classes.js';
import { findFile, optionalColumn, requireColumns, scanTable } from './table.js';
import type { CxrRecord } from './types.js';

/**
 * The datasets CheXmask covers (CANDID-PTX, in early versions, is not supported), and `csv`: any CheXmask-style table
 * (id column, `Height`, `Width`, structure RLE columns) joined to the records of a CSV manifest on their id (the
 * manifest's path cell), such as the phantom dataset's `masks.csv` (`cxformer synth`).
 */
export type ChexmaskSource = 'mimic' | 'chexpert' | 'nih' | 'padchest' | 'vindr' | 'csv';

/** File name and image id column of each source's table. */
export const CHEXMASK_FILES: Readonly<Record<ChexmaskSource, { file: string; idColumn: string }>> = {
  mimic: { file: 'MIMIC-CXR-JPG.csv', idColumn: 'dicom_id' },
  chexpert: { file: 'CheXpert.csv', idColumn: 'Path' },
  nih: { file: 'ChestX-Ray8.csv', idColumn: 'Image Index' },
  padchest: { file: 'Padchest.csv', idColumn: 'ImageID' },
  vindr: { file: 'VinDr-CXR.csv', idColumn: 'image_id' },
  csv: { file: 'masks.csv', idColumn: 'Path' },
};

export interface ChexmaskOptions {
  /** The source dataset of the records. */
  source: ChexmaskSource;
  /** The source records to join (from the source's adapter). */
  records: readonly CxrRecord[];
  /** The table. Default: `OriginalResolution/<file>` or `<file>` under the CheXmask root (see CHEXMASK_FILES). */
  csv?: string;
  /** Image id column. Default by source (CHEXMASK_FILES). */
  idColumn?: string;
  /** Structures to keep. @default CHEXMASK_STRUCTURES ('Left Lung', 'Right Lung', 'Heart') */
  structures?: readonly string[];
  /** Keep only rows with `Dice RCA (Mean)` at least this (the data dictionary recommends 0.7; CXformer used none). */
  minDiceRca?: number;
}

/**
 * Joins CheXmask masks to source records: returns copies of the records that have a complete mask row, in the
 * records' order, with `masks` set.
 * @throws DataError for a missing table or column (the columns found are listed), a bad Height/Width, a repeated
 *   image id among the joined rows, or a missing `Dice RCA (Mean)` column when `minDiceRca` is given
 */
export async function loadChexmask(root: string, opts: ChexmaskOptions): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const spec = CHEXMASK_FILES[opts.source];
  if (spec === undefined) throw new DataError(`unknown CheXmask source '${String(opts.source)}' (expected ${Object.keys(CHEXMASK_FILES).join(', ')})`);
  const file = await findFile(base, opts.csv !== undefined ? [opts.csv] : [path.join('OriginalResolution', spec.file), spec.file], `CheXmask table for ${opts.source}`, true);
  const idColumn = opts.idColumn ?? spec.idColumn;
  const structures = opts.structures ?? CHEXMASK_STRUCTURES;
  const norm = opts.source === 'chexpert' ? chexpertRelativePath : (s: string) => s.trim();
  const byId = new Map<string, CxrRecord>();
  for (const r of opts.records) byId.set(norm(r.id), r);

  const masks = new Map<string, { height: number; width: number; rle: Record<string, string>; line: number }>();
  let cId = 0;
  let cH = 0;
  let cW = 0;
  let cS: number[] = [];
  let cDice: number | undefined;
  await scanTable(
    file,
    (h) => {
      const what = `CheXmask's ${path.basename(file)}`;
      [cId, cH, cW] = requireColumns(h, [idColumn, 'Height', 'Width'], what) as [number, number, number];
      cS = requireColumns(h, structures, what);
      cDice = optionalColumn(h, 'Dice RCA (Mean)');
      if (opts.minDiceRca !== undefined && cDice === undefined) requireColumns(h, ['Dice RCA (Mean)'], `${what} (minDiceRca is set)`);
    },
    (cells, line, row) => {
      const id = norm(cells[cId] as string);
      if (!byId.has(id)) return;
      const rle: Record<string, string> = {};
      for (let k = 0; k < structures.length; k++) {
        const v = (cells[cS[k] as number] as string).trim();
        if (v === '' || v.toLowerCase() === 'nan') return; // missing label: dropped (docs/recipe.md §5.2)
        rle[structures[k] as string] = v;
      }
      if (opts.minDiceRca !== undefined) {
        const d = Number((cells[cDice as number] as string).trim());
        if (!(d >= opts.minDiceRca)) return;
      }
      const dim = (c: number, name: string): number => {
        const raw = (cells[c] as string).trim();
        const v = Number(raw);
        if (!(Number.isSafeInteger(v) && v > 0)) throw new DataError(`expected a positive integer, got '${raw}'`, { file, line, row, column: name });
        return v;
      };
      const height = dim(cH, 'Height');
      const width = dim(cW, 'Width');
      const prev = masks.get(id);
      if (prev !== undefined) throw new DataError(`image '${id}' has a second mask row (first at line ${prev.line})`, { file, line, row, column: idColumn });
      masks.set(id, { height, width, rle, line });
    },
  );
  const out: CxrRecord[] = [];
  for (const r of opts.records) {
    const m = masks.get(norm(r.id));
    if (m !== undefined) out.push({ ...r, masks: { height: m.height, width: m.width, rle: m.rle } });
  }
  return out;
}
