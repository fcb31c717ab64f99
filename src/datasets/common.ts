/** Value conventions shared by the dataset adapters: views, sex, age, label cells, image paths and file checks. */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { DataError, type DataErrorLocation } from '../data/errors.js';
import type { AdapterOptions, CxrRecord } from './types.js';

/**
 * Normalises a view name: 'PA' and 'AP' (any case); 'AP Supine' (also PadChest's 'AP_horizontal', torchxrayvision's
 * mapping); 'LATERAL' (also 'Lateral', PadChest's 'L'); 'LL'; 'FRONTAL' (frontal with AP/PA unknown). Anything else
 * is returned trimmed, as is; blank gives undefined.
 */
export function normalizeView(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const v = raw.trim();
  if (v === '') return undefined;
  const u = v.toUpperCase().replace(/[\s_]+/g, ' ');
  switch (u) {
    case 'PA':
      return 'PA';
    case 'AP':
      return 'AP';
    case 'AP SUPINE':
    case 'AP HORIZONTAL':
      return 'AP Supine';
    case 'LATERAL':
    case 'L':
      return 'LATERAL';
    case 'LL':
      return 'LL';
    case 'FRONTAL':
      return 'FRONTAL';
    default:
      return v;
  }
}

/** 'M' / 'Male' → 'M', 'F' / 'Female' → 'F', 'O' / 'Other' → 'O'; blank or 'Unknown' → undefined; else the raw value. */
export function normalizeSex(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const v = raw.trim();
  const u = v.toUpperCase();
  if (u === '' || u === 'UNKNOWN' || u === 'U' || u === 'NAN') return undefined;
  if (u === 'M' || u === 'MALE') return 'M';
  if (u === 'F' || u === 'FEMALE') return 'F';
  if (u === 'O' || u === 'OTHER') return 'O';
  return v;
}

/**
 * Parses an age cell: a number of years ('68', '68.0'), a DICOM age string ('058Y', '006M', '010W', '020D'), or a
 * leading integer followed by text ('85 or more' → 85, BRAX's top age group; '60-64' → 60, the lower bound).
 * Blank, zero (CheXpert's unknown) and unparsable cells give undefined.
 */
export function parseAge(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const v = raw.trim();
  if (v === '') return undefined;
  let m = /^(\d+(?:\.\d+)?)$/.exec(v);
  if (m) {
    const a = Number(m[1]);
    return a > 0 ? a : undefined;
  }
  m = /^(\d+)\s*([YMWD])$/i.exec(v);
  if (m) {
    const n = Number(m[1]);
    const unit = (m[2] as string).toUpperCase();
    const years = unit === 'Y' ? n : unit === 'M' ? n / 12 : unit === 'W' ? n / 52 : n / 365;
    return years > 0 ? years : undefined;
  }
  m = /^(\d+)\b/.exec(v);
  if (m) {
    const a = Number(m[1]);
    return a > 0 ? a : undefined;
  }
  return undefined;
}

/**
 * Parses a label cell of the CheXpert-style label files: '1', '1.0', '0', '0.0', '-1', '-1.0' (any numeric form of
 * 1, 0, −1) or blank (null).
 * @throws DataError at `where` for anything else
 */
export function parseLabelCell(raw: string, where: DataErrorLocation): number | null {
  const v = raw.trim();
  if (v === '' || v.toLowerCase() === 'nan') return null;
  const n = Number(v);
  if (n === 1 || n === 0 || n === -1) return n === 0 ? 0 : n; // no -0
  throw new DataError(`expected a label 1, 0, -1 or blank, got '${raw}'`, where);
}

/** Parses a 0/1 cell (VinDr readers, RSNA Target); blank gives null. */
export function parseBinaryCell(raw: string, where: DataErrorLocation): number | null {
  const v = parseLabelCell(raw, where);
  if (v === -1) throw new DataError(`expected 0, 1 or blank, got '${raw}'`, where);
  return v;
}

/**
 * Majority vote over 0/1 votes (nulls do not vote): 1 when ones outnumber zeros, 0 otherwise (ties → 0, docs/recipe.md §5.1,
 * as pandas `mode().iloc[0]` picks the smaller value); null when nobody voted.
 */
export function majorityVote(votes: readonly (number | null)[]): number | null {
  let ones = 0;
  let zeros = 0;
  for (const v of votes) {
    if (v === 1) ones++;
    else if (v === 0) zeros++;
  }
  if (ones + zeros === 0) return null;
  return ones > zeros ? 1 : 0;
}

/** Replaces the extension of `p` (with the dot). */
export function withExtension(p: string, ext: string): string {
  const e = ext.startsWith('.') ? ext : `.${ext}`;
  return p.slice(0, p.length - path.extname(p).length) + e;
}

/** Runs `fn` over `items` with at most `limit` promises in flight; results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const k = next++;
      out[k] = await fn(items[k] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function fileExists(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/**
 * Applies the options every adapter shares: `imageExt`, then `checkFiles`.
 * @param what the dataset, for messages
 * @throws DataError listing missing images (count and first five) when `checkFiles` is true
 */
export async function finishRecords(records: CxrRecord[], opts: AdapterOptions, what: string): Promise<CxrRecord[]> {
  let out = records;
  if (opts.imageExt !== undefined) {
    const ext = opts.imageExt;
    out = out.map((r) => ({ ...r, path: withExtension(r.path, ext) }));
  }
  if (opts.checkFiles) {
    const present = await mapLimit(out, 64, (r) => fileExists(r.path));
    const missing = out.filter((_, k) => !present[k]);
    if (missing.length > 0) {
      if (opts.checkFiles === 'drop') return out.filter((_, k) => present[k]);
      const first = missing
        .slice(0, 5)
        .map((r) => `${r.id} -> ${r.path}`)
        .join('; ');
      throw new DataError(
        `${what}: ${missing.length} of ${out.length} image file(s) do not exist (first: ${first}${missing.length > 5 ? '; …' : ''}); ` +
          "check the dataset root and layout, or pass checkFiles: 'drop' to skip them",
      );
    }
  }
  return out;
}

/** Remembers where each id was first seen and throws on a repeat. */
export class IdRegistry {
  /** id → file index · 2^32 + line (numbers, not strings: registries hold hundreds of thousands of ids). */
  private readonly seen = new Map<string, number>();
  private readonly files: string[] = [];
  constructor(private readonly what: string) {}

  /**
   * @param where the location of this occurrence (file and line)
   * @throws DataError naming both occurrences
   */
  add(id: string, where: DataErrorLocation & { file: string; line: number }): void {
    const prev = this.seen.get(id);
    if (prev !== undefined) {
      const file = this.files[Math.floor(prev / 4294967296)] as string;
      throw new DataError(`${this.what} '${id}' appears twice (first at ${path.basename(file)} line ${prev % 4294967296})`, where);
    }
    let f = this.files.lastIndexOf(where.file);
    if (f < 0) f = this.files.push(where.file) - 1;
    this.seen.set(id, f * 4294967296 + where.line);
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }
}
