/**
 * `cxformer label REPORTS.csv --labeler phantom|rules|labels:FILE [--out labels.csv] [--column Findings]
 * [--id-column Path] [--codes cells|chexbert] [-q]`: report text → CheXpert-style label CSV (the id column, then one
 * column per class of the labeler, cells 1.0 / 0.0 / -1.0 / blank). No LibTorch: the labelers are TypeScript.
 *
 * An empty report is labelled like any other text (the phantom grammar reads it as "nothing mentioned", the rules
 * labeler gives No Finding 1) and warned about on stderr with its row and id; so are sentences a labeler could not
 * read. A missing column, a malformed CSV and an unknown labeler are errors (exit 2) naming the file and what was
 * expected and found.
 */
import { readFile } from 'node:fs/promises';
import { parseCsv } from '../../data/csv.js';
import { formatCsv } from '../../data/csv.js';
import { DataError } from '../../data/errors.js';
import { writeFileAtomic } from '../../data/fsutil.js';
import { formatCell, labelerFromSpec, labelReports } from '../../eval/labelers/index.js';
import type { Args } from './common.js';

/** Warnings printed before the rest are only counted. */
const MAX_WARNINGS = 20;

export async function run(a: Args): Promise<number> {
  const file = String(a.reports);
  const column = String(a.column ?? 'Findings');
  const idColumn = String(a['id-column'] ?? 'Path');
  const codes = a.codes === 'chexbert' ? 'chexbert' : 'cells';
  const labeler = labelerFromSpec(String(a.labeler), { codes });

  const table = parseCsv(await readFile(file, 'utf8'), file);
  for (const [flag, name] of [['--column', column], ['--id-column', idColumn]] as const) {
    if (!table.header.includes(name)) {
      throw new DataError(`no column '${name}' (${flag}); the header has: ${table.header.join(', ')}`, { file, line: 1 });
    }
  }
  const ids = table.rows.map((r) => r[table.header.indexOf(idColumn)] as string);
  const texts = table.rows.map((r) => r[table.header.indexOf(column)] as string);
  const where = (i: number) => `${file}: line ${table.lines[i]} (row ${i + 1}, ${idColumn} ${ids[i]})`;

  const warnings: string[] = [];
  texts.forEach((t, i) => {
    if (t.trim() === '') warnings.push(`${where(i)}: empty report in column '${column}'; labelled as text with no mention`);
  });
  const res = labelReports(texts, labeler, { ids });
  for (const d of res.diagnostics) if (d.kind !== 'empty') warnings.push(`${where(d.report)}: ${d.message}`);

  const csv = formatCsv([idColumn, ...res.classes], res.rows.map((r, i) => [ids[i] as string, ...r.map(formatCell)]));
  if (a.out !== undefined) await writeFileAtomic(String(a.out), csv);
  else process.stdout.write(csv);

  if (!a.quiet) {
    for (const w of warnings.slice(0, MAX_WARNINGS)) process.stderr.write(`warning: ${w}\n`);
    if (warnings.length > MAX_WARNINGS) process.stderr.write(`warning: … and ${warnings.length - MAX_WARNINGS} more\n`);
    const to = a.out !== undefined ? String(a.out) : 'stdout';
    process.stderr.write(`label: ${res.rows.length} reports labelled by ${labeler.name} (${labeler.version}), ${res.classes.length} classes → ${to}${warnings.length ? `; ${warnings.length} warning(s)` : ''}\n`);
  }
  return 0;
}
