/**
 * MIMIC-CXR reports as report-generation records: the official free-text reports (MIMIC-CXR 2.0.0,
 * `mimic-cxr-reports.zip`: `files/p{subject[:2]}/p{subject}/s{study}.txt`) joined to the MIMIC-CXR-JPG images through
 * the existing adapter (`loadMimic`: metadata, labels, official split, `mimicImagePath`), with the section chosen by
 * the MIT-LCP parser port (sections.ts).
 *
 * Protocol `r2gen` (default; the project's design, docs/report-data.md, after R2Gen, cuhksz-nlp/R2Gen):
 * 1. the official split (mimic-cxr-2.0.0-split.csv.gz; 'validate' → 'valid'); images without a split are dropped;
 * 2. frontal images only: ViewPosition PA or AP (`views`);
 * 3. section = findings: the LAST non-empty findings section (create_section_files.py's `mimic_cxr_sectioned.csv`
 *    column); studies without one are dropped, and so are the studies with a custom rule in section_parser.py
 *    (create_section_files.py writes no sectioned row for them, and ttanida/rgrg src/dataset/create_dataset.py skips
 *    them as "reports that don't have findings sections"; section 'conclusion' uses the rules);
 * 4. train and valid: every remaining image is a record; test: ONE image per study, the first PA by dicom_id
 *    (string order), else the first AP (in general: the first image of the earliest view in `views`).
 * Protocol `all-images`: steps 1 and 3 only — every image with a split and a report section, any view.
 *
 * Sections: 'findings', 'impression', 'findings+impression' (both, findings first, joined by a blank line; a study
 * with one of them keeps that one) and 'conclusion' (create_section_files.py's per-study text: custom rules, then
 * impression > findings > last_paragraph > comparison). Each record also carries its report's INDICATION section
 * (the last one, whitespace collapsed) when it has one: the optional prompt field of the LLaVA recipe. Texts are stripped (Python's str.strip); whitespace inside
 * is kept unless `collapseWhitespace`.
 *
 * DATA USE: MIMIC-CXR text is credentialed data (PhysioNet DUA). Nothing here writes it anywhere; never commit it,
 * print it in logs, or put it in test fixtures.
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import type { ReportLabel, ReportRecord } from '../rrg/data.js';
import { finishRecords } from './common.js';
import { loadMimic, type MimicOptions } from './mimic.js';
import { type CustomRules, customMimicCxrRules, extractConclusion, extractSections, lastSection, pyStrip, readReportTextSync, sectionText } from './sections.js';
import { findFile, isDirectory } from './table.js';
import type { CxrRecord, Split } from './types.js';

export type MimicReportSection = 'findings' | 'impression' | 'findings+impression' | 'conclusion';
export type MimicReportProtocol = 'r2gen' | 'all-images';

export interface MimicReportOptions extends Pick<MimicOptions, 'metadataCsv' | 'labelsCsv' | 'labeler' | 'splitCsv' | 'imagesDir' | 'imageExt'> {
  /**
   * The report tree: the folder holding `files/` (as `mimic-cxr-reports.zip` unpacks), or that `files/` folder
   * itself. May be a separate root from the JPG root; a relative path is resolved against the root (as `imagesDir`).
   * @default the root
   */
  reportsDir?: string;
  /** @default 'findings' */
  section?: MimicReportSection;
  /** @default 'r2gen' */
  protocol?: MimicReportProtocol;
  /** Frontal views kept by the r2gen protocol, in test-image preference order. @default ['PA', 'AP'] */
  views?: string[];
  /** Section rules (custom_mimic_cxr_rules()). @default the shipped assets/datasets/mimic-sections-custom.json */
  rules?: CustomRules;
  /** Replace every run of whitespace in the report by one space. @default false */
  collapseWhitespace?: boolean;
  /** Attach the study's CheXpert (or NegBio) labels when the label file exists. @default true */
  labels?: boolean;
  /**
   * Check that the kept images exist: true throws (count and first five), 'drop' drops them (counted).
   * @default false
   */
  checkFiles?: boolean | 'drop';
}

/** What was kept and dropped, and why. Image counts are exclusive, in the order listed. */
export interface MimicReportSummary {
  section: MimicReportSection;
  protocol: MimicReportProtocol;
  /** The folder the `p{xx}/p{subject}/s{study}.txt` paths are under. */
  reportsDir: string;
  images: {
    /** Rows of the metadata file. */
    total: number;
    /** Not in the split file. */
    noSplit: number;
    /** View not in `views` (r2gen protocol). */
    notFrontal: number;
    /** Their study has no report file. */
    noReport: number;
    /** Their study has a custom section rule (findings/impression sections only). */
    customRule: number;
    /** Their study's report has no such section (or it is empty). */
    noSection: number;
    /** Test images beyond the one per study (r2gen protocol). */
    testExtra: number;
    /** Missing image files dropped by checkFiles: 'drop'. */
    missingImage: number;
    kept: number;
  };
  /** Studies whose report was looked for (those with an image left after the split and view filters). */
  studies: { read: number; noReport: number; customRule: number; noSection: number; kept: number };
  /** The first few report files that were missing. */
  missingReports: string[];
}

/** The report file of a study under the report tree's `files/` folder. */
export function mimicReportPath(filesDir: string, subject: string, study: string): string {
  return path.join(filesDir, `p${subject.slice(0, 2)}`, `p${subject}`, `s${study}.txt`);
}

/** The text of the chosen section, or why there is none. */
type Chosen = { text: string; indication?: string } | { drop: 'customRule' | 'noSection' };

/** The report's INDICATION section (the last one; "reason for exam" and the other names that normalise to it), whitespace collapsed. */
function indicationOf(text: string): string | undefined {
  const s = lastSection(sectionText(text), 'indication')?.split(/\s+/).filter((w) => w !== '').join(' ');
  return s ? s : undefined;
}

function chooseSection(text: string, study: string, section: MimicReportSection, rules: CustomRules): Chosen {
  if (section === 'conclusion') {
    const c = pyStrip(extractConclusion(text, study, rules).text);
    return c === '' ? { drop: 'noSection' } : { text: c };
  }
  const row = extractSections(text, study, rules);
  if (row === null) return { drop: 'customRule' };
  const parts = section === 'findings' ? [row.findings] : section === 'impression' ? [row.impression] : [row.findings, row.impression];
  const kept = parts.filter((p): p is string => p !== null && p !== '');
  return kept.length === 0 ? { drop: 'noSection' } : { text: kept.join('\n\n') };
}

/** Files read synchronously between two turns of the event loop. */
const READ_BATCH = 256;

/**
 * Loads MIMIC-CXR image/report records (see the module comment for the protocol).
 * @param root the MIMIC-CXR-JPG root (metadata, split and label tables, `files/` with the JPGs)
 * @returns the records, in metadata order, and what was dropped and why
 * @throws DataError for the MIMIC-CXR-JPG tables' errors (loadMimic; the split file is required), an unreadable or
 *   non-UTF-8 report file, a custom section name its report lacks (section 'conclusion'), or when no record is left
 *   (the summary's counts are in the message)
 */
export async function loadMimicReports(root: string, opts: MimicReportOptions = {}): Promise<{ records: ReportRecord[]; summary: MimicReportSummary }> {
  const base = path.resolve(root);
  const section = opts.section ?? 'findings';
  const protocol = opts.protocol ?? 'r2gen';
  const views = opts.views ?? ['PA', 'AP'];
  const rules = opts.rules ?? customMimicCxrRules();
  if (!['findings', 'impression', 'findings+impression', 'conclusion'].includes(section)) {
    throw new DataError(`unknown section '${section}' (expected findings, impression, findings+impression or conclusion)`);
  }
  if (protocol !== 'r2gen' && protocol !== 'all-images') throw new DataError(`unknown protocol '${protocol as string}' (expected r2gen or all-images)`);
  const treeRoot = path.resolve(base, opts.reportsDir ?? '.');
  const filesDir = (await isDirectory(path.join(treeRoot, 'files'))) ? path.join(treeRoot, 'files') : treeRoot;

  const images = await loadMimic(base, {
    metadataCsv: opts.metadataCsv,
    labelsCsv: opts.labelsCsv,
    labeler: opts.labeler,
    splitCsv: opts.splitCsv ?? 'mimic-cxr-2.0.0-split.csv.gz', // named: the split file is required
    imagesDir: opts.imagesDir,
    imageExt: opts.imageExt,
  });
  const labeler = opts.labeler ?? 'chexpert';
  const withLabels =
    opts.labels !== false && (await findFile(base, [opts.labelsCsv ?? `mimic-cxr-2.0.0-${labeler}.csv.gz`], 'labels', opts.labelsCsv !== undefined)) !== undefined;

  const summary: MimicReportSummary = {
    section,
    protocol,
    reportsDir: filesDir,
    images: { total: images.length, noSplit: 0, notFrontal: 0, noReport: 0, customRule: 0, noSection: 0, testExtra: 0, missingImage: 0, kept: 0 },
    studies: { read: 0, noReport: 0, customRule: 0, noSection: 0, kept: 0 },
    missingReports: [],
  };

  // 1–2. Split and view.
  const viewSet = new Set(views);
  const candidates: CxrRecord[] = [];
  for (const r of images) {
    if (r.split === undefined) summary.images.noSplit++;
    else if (protocol === 'r2gen' && (r.view === undefined || !viewSet.has(r.view))) summary.images.notFrontal++;
    else candidates.push(r);
  }

  // 3. One report per study.
  const studies = new Map<string, { subject: string; study: string }>();
  for (const r of candidates) {
    const key = `${r.patient}/${r.study as string}`;
    if (!studies.has(key)) studies.set(key, { subject: r.patient, study: r.study as string });
  }
  // Synchronous reads in batches, yielding to the event loop between batches (for 227k small files a synchronous
  // read is several times faster than an async one, which costs four thread-pool round trips).
  const chosen = new Map<string, Chosen | { drop: 'noReport' }>();
  let inBatch = 0;
  for (const [key, s] of studies) {
    const file = mimicReportPath(filesDir, s.subject, s.study);
    const text = readReportTextSync(file);
    if (text === undefined) chosen.set(key, { drop: 'noReport' });
    else {
      try {
        const c = chooseSection(text, s.study, section, rules);
        const indication = 'text' in c ? indicationOf(text) : undefined;
        chosen.set(key, indication !== undefined ? { ...c, indication } : c);
      } catch (e) {
        // A custom section name the report lacks (extractConclusion): add the file.
        if (e instanceof DataError && e.file === undefined) throw new DataError(e.message, { file });
        throw e;
      }
    }
    if (++inBatch === READ_BATCH) {
      inBatch = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  summary.studies.read = studies.size;
  // Count and list in metadata order.
  for (const [key, s] of studies) {
    const c = chosen.get(key) as Chosen | { drop: 'noReport' };
    if ('drop' in c) {
      summary.studies[c.drop]++;
      if (c.drop === 'noReport' && summary.missingReports.length < 5) summary.missingReports.push(mimicReportPath(filesDir, s.subject, s.study));
    } else summary.studies.kept++;
  }

  let kept: { r: CxrRecord; text: string; indication?: string }[] = [];
  for (const r of candidates) {
    const c = chosen.get(`${r.patient}/${r.study as string}`) as Chosen | { drop: 'noReport' };
    if ('drop' in c) summary.images[c.drop]++;
    else kept.push({ r, text: opts.collapseWhitespace ? c.text.split(/\s+/).filter((w) => w !== '').join(' ') : c.text, ...(c.indication !== undefined ? { indication: c.indication } : {}) });
  }

  // 4. Test: one image per study.
  if (protocol === 'r2gen') {
    const pick = new Map<string, CxrRecord>();
    const rank = (r: CxrRecord): number => views.indexOf(r.view as string);
    for (const { r } of kept) {
      if (r.split !== 'test') continue;
      const key = `${r.patient}/${r.study as string}`;
      const best = pick.get(key);
      if (best === undefined || rank(r) < rank(best) || (rank(r) === rank(best) && r.id < best.id)) pick.set(key, r);
    }
    const before = kept.length;
    kept = kept.filter(({ r }) => r.split !== 'test' || pick.get(`${r.patient}/${r.study as string}`) === r);
    summary.images.testExtra = before - kept.length;
  }

  // Image files.
  if (opts.checkFiles) {
    const present = new Set(await finishRecords(kept.map((k) => k.r), { checkFiles: opts.checkFiles }, 'MIMIC-CXR-JPG'));
    const before = kept.length;
    kept = kept.filter((k) => present.has(k.r));
    summary.images.missingImage = before - kept.length;
  }

  const records: ReportRecord[] = kept.map(({ r, text, indication }) => ({
    id: r.id,
    image: r.path,
    report: text,
    ...(indication !== undefined ? { indication } : {}),
    split: r.split as Split,
    patient: r.patient,
    ...(r.study !== undefined ? { study: r.study } : {}),
    ...(r.view !== undefined ? { view: r.view } : {}),
    ...(withLabels ? { labels: r.labels as Record<string, ReportLabel> } : {}),
  }));
  summary.images.kept = records.length;
  if (records.length === 0) {
    const i = summary.images;
    throw new DataError(
      `MIMIC-CXR reports: no record left of ${i.total} images (no split ${i.noSplit}, not ${views.join('/')} ${i.notFrontal}, ` +
        `no report file ${i.noReport}, custom rule ${i.customRule}, no ${section} section ${i.noSection}); report files are looked for under ${filesDir}` +
        (summary.missingReports.length > 0 ? ` (first missing: ${summary.missingReports.join(', ')})` : ''),
    );
  }
  return { records, summary };
}

/** One log line per summary: `kept N of M images; dropped: …`. */
export function formatMimicReportSummary(s: MimicReportSummary): string {
  const i = s.images;
  const parts = [
    `no split ${i.noSplit}`,
    ...(s.protocol === 'r2gen' ? [`not frontal ${i.notFrontal}`] : []),
    `no report file ${i.noReport}`,
    `custom rule ${i.customRule}`,
    `no ${s.section} ${i.noSection}`,
    ...(s.protocol === 'r2gen' ? [`extra test images ${i.testExtra}`] : []),
    ...(i.missingImage > 0 ? [`missing image ${i.missingImage}`] : []),
  ];
  return (
    `MIMIC-CXR ${s.section} (${s.protocol}): kept ${i.kept} of ${i.total} images, ${s.studies.kept} of ${s.studies.read} studies; ` +
    `dropped images: ${parts.join(', ')}`
  );
}
