/**
 * The MIT-LCP section parser port (src/datasets/sections.ts) on GENERATED MIMIC-style reports (mimic-style-reports.ts).
 * Every expected section is worked out by hand from MIT-LCP/mimic-cxr txt/section_parser.py and
 * txt/create_section_files.py (the reasoning is in each case's comment); no Python runs here.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import {
  customMimicCxrRules,
  customRulesFile,
  extractConclusion,
  extractSections,
  normalizeSectionNames,
  parseCustomRules,
  pyStrip,
  readReportText,
  readReportTextSync,
  sectionText,
} from '../../src/datasets/sections.js';
import * as R from './mimic-style-reports.js';

/** Outputs of MIT-LCP's Python code on generated texts (test/fixtures/sections/README.md). */
interface ReferenceCase {
  study: string;
  text: string;
  sections: string[];
  names: string[];
  starts: number[];
  conclusion: string | { error: string };
  sectioned: Record<string, string | null> | null;
}
const REFERENCE = new URL('../fixtures/sections/reference.json', import.meta.url);

describe('sectionText (section_parser.py section_text)', () => {
  it('splits a standard report at its headers; the preamble keeps the "\\n " of the first header line', () => {
    const s = sectionText(R.STANDARD);
    expect(s.names).toEqual(['preamble', 'examination', 'indication', 'technique', 'comparison', 'findings', 'impression']);
    expect(s.sections[0]).toBe('                                 FINAL REPORT\n ');
    // 'EXAMINATION:  CHEST': `\s` takes one of the two spaces; the text runs to the '\n' that starts ' INDICATION:'.
    expect(s.sections[1]).toBe(' CHEST (PA AND LAT)\n ');
    expect(s.sections[4]).toBe(' ___\n ');
    // ' FINDINGS: ' ends in a space, which `\s` takes: the section starts with the line end.
    expect(s.sections[5]).toBe(`\n \n ${R.STANDARD_FINDINGS}\n `);
    expect(s.sections[6]).toBe(`\n \n ${R.STANDARD_IMPRESSION}\n`);
    // Starts: just after each header's colon and one whitespace character.
    expect(s.starts[0]).toBe(0);
    expect(s.starts[1]).toBe(R.STANDARD.indexOf('EXAMINATION:') + 'EXAMINATION: '.length);
    expect(s.starts[5]).toBe(R.STANDARD.indexOf('FINDINGS:') + 'FINDINGS: '.length);
    expect(s.starts[6]).toBe(R.STANDARD.indexOf('IMPRESSION:') + 'IMPRESSION: '.length);
    // The sections tile the text from the first header on.
    s.sections.forEach((t, k) => {
      if (k > 0) expect(R.STANDARD.slice(s.starts[k], s.starts[k]! + t.length)).toBe(t);
    });
  });

  it('keeps both findings sections of a report with two (the selection takes the last)', () => {
    const s = sectionText(R.TWO_FINDINGS);
    expect(s.names).toEqual(['preamble', 'history', 'findings', 'findings', 'impression']);
    expect(s.sections[2]).toBe(' PA and lateral views of the chest were obtained.\n ');
    expect(s.sections[3]).toBe(` ${R.TWO_FINDINGS_LAST}\n `);
    expect(s.sections[4]).toBe(` ${R.TWO_FINDINGS_IMPRESSION}\n`); // ' IMPRESSIONS:' → 'impression'
  });

  it('removes an empty findings section, even the last one', () => {
    const s = sectionText(R.TRAILING_EMPTY_FINDINGS);
    // Raw headers: preamble, findings, impression, findings (''); the empty one goes.
    expect(s.names).toEqual(['preamble', 'findings', 'impression']);
    expect(s.sections[1]).toBe(' The lungs are clear.  Heart size is normal.\n ');
    expect(s.sections[2]).toBe(' No acute process.\n ');
  });

  it('drops an empty title-like header and adds the last_paragraph fallback when no findings/impression remain', () => {
    const s = sectionText(R.TITLE_THEN_PARAGRAPHS);
    // 'CHEST, PA LATERAL' → 'findings' (phrase 'chest'), text ' ' → removed; the indication section is then cut
    // at its first '\n \n'.
    expect(s.names).toEqual(['preamble', 'indication', 'last_paragraph']);
    expect(s.sections).toEqual([R.TITLE_SECTIONS.preamble, R.TITLE_SECTIONS.indication, R.TITLE_SECTIONS.last_paragraph]);
    const ind = R.TITLE_THEN_PARAGRAPHS.indexOf('INDICATION:') + 'INDICATION: '.length;
    // last_paragraph's start is the indication start + the cut indication's length (it points at the '\n \n').
    expect(s.starts).toEqual([0, ind, ind + R.TITLE_SECTIONS.indication.length]);
    expect(R.TITLE_THEN_PARAGRAPHS.slice(s.starts[2], s.starts[2]! + 3)).toBe('\n \n');
  });

  it('misses a header on the line right after a header that ends its line ("skip past the first newline")', () => {
    const s = sectionText(R.SKIPPED_HEADER);
    expect(s.names).toEqual(['preamble', 'findings']);
    expect(pyStrip(s.sections[1]!)).toBe(R.SKIPPED_FINDINGS);
  });

  it("makes a report without headers one 'full report' section, cut into last_paragraph", () => {
    const s = sectionText(R.NO_HEADER);
    expect(s.names).toEqual(['full report', 'last_paragraph']);
    expect(s.sections).toEqual(['Portable chest.', 'Lines and tubes are unchanged.\n \nNo new consolidation.\n']);
    expect(s.starts).toEqual([0, 'Portable chest.'.length]);
    // No '\n \n' at all: one section, nothing added.
    expect(sectionText('Single line report.\n')).toEqual({ sections: ['Single line report.\n'], names: ['full report'], starts: [0] });
  });

  it('needs the leading space, upper case and whitespace after the colon', () => {
    expect(sectionText('x\nFINDINGS: a\n').names).toEqual(['full report']); // no space after the line end
    expect(sectionText('x\n Findings: a\n').names).toEqual(['full report']); // lower case
    expect(sectionText('x\n FINDINGS:a\n').names).toEqual(['full report']); // no whitespace after ':'
    expect(sectionText('x\n FINDINGS:\ta\n').names).toEqual(['preamble', 'findings']);
    // Python's \s includes \x1c–\x1f and \x85 (JavaScript's does not), and excludes U+FEFF (JavaScript's includes it).
    expect(sectionText('x\n FINDINGS:\x1ca\n').names).toEqual(['preamble', 'findings']);
    expect(sectionText('x\n FINDINGS:\x85a\n').names).toEqual(['preamble', 'findings']);
    expect(sectionText('x\n FINDINGS:\ufeffa\n').names).toEqual(['full report']);
  });

  it('counts offsets in code points, as Python does', () => {
    const t = 'x \u{1F600}\n INDICATION: a\n \n FINDINGS: b\n';
    const s = sectionText(t);
    expect(s.names).toEqual(['preamble', 'indication', 'findings']);
    // '\u{1F600}' is one character for Python (two UTF-16 units): 'x', ' ', 😀, '\n', ' ' (0–4), 'INDICATION:'
    // (5–15), ' ' (16) → 17; 'a', '\n', ' ', '\n', ' ' (17–21), 'FINDINGS:' (22–30), ' ' (31) → 32.
    expect(s.starts).toEqual([0, 17, 32]);
  });
});

describe('normalizeSectionNames (section_parser.py normalize_section_names)', () => {
  it('maps by the dictionary, then by the main-section substrings in order, then by the view phrases', () => {
    const raw = [
      'FINDINGS AND IMPRESSION', // dictionary → impression
      'IMPRESSIONS', // substring 'impression'
      'CONCLUSION', // dictionary → impression
      'PA AND LATERAL VIEWS OF THE CHEST', // phrases 'pa and lateral', 'chest' → findings
      'FINIDNGS', // dictionary misspelling → findings
      'CLINICAL HISTORY', // dictionary → history
      'REASON FOR EXAM', // dictionary → indication
      'WET READ', // dictionary
      'NDICATION', // the dictionary maps this one to 'impression' (sic)
      '  Comparisons ', // lower-cased and stripped first
      'PORTABLE AP UPRIGHT', // phrase 'portable' → findings
      'ADDENDUM TO HISTORY', // 'history' is tried before 'addendum'
      'HISTORY AND IMPRESSION', // 'impression' is tried first
      'NOTE', // unknown: kept (lower case)
      'PA AND LAT VIEWS', // phrase 'pa and lat'
      'CHEST, TWO VIEWS', // dictionary → findings
      'findings/ impression', // dictionary → impression
      'PFI', // dictionary → history
    ];
    expect(normalizeSectionNames(raw)).toEqual([
      'impression',
      'impression',
      'impression',
      'findings',
      'findings',
      'history',
      'indication',
      'wet read',
      'impression',
      'comparison',
      'findings',
      'history',
      'impression',
      'note',
      'findings',
      'findings',
      'impression',
      'history',
    ]);
  });

  it('normalises headers inside a report: FINDINGS AND IMPRESSION becomes the impression', () => {
    const s = sectionText(R.FINDINGS_AND_IMPRESSION);
    expect(s.names).toEqual(['preamble', 'examination', 'indication', 'impression']);
    expect(pyStrip(s.sections[3]!)).toBe(R.FAI_IMPRESSION);
  });
});

describe('pyStrip', () => {
  it("strips Python's whitespace only", () => {
    expect(pyStrip(' \n\t a b \r\x0b\x0c')).toBe('a b');
    expect(pyStrip('\x1c\x85a\u3000')).toBe('a');
    expect(pyStrip('\ufeffa\ufeff')).toBe('\ufeffa\ufeff');
  });
});

describe('extractSections (create_section_files.py study_sections)', () => {
  it('takes the LAST section of each name, stripped, null when absent', () => {
    expect(extractSections(R.STANDARD, '50000001')).toEqual({
      impression: R.STANDARD_IMPRESSION,
      findings: R.STANDARD_FINDINGS,
      last_paragraph: null,
      comparison: '___',
    });
    expect(extractSections(R.TWO_FINDINGS, 's50000002')).toEqual({
      impression: R.TWO_FINDINGS_IMPRESSION,
      findings: R.TWO_FINDINGS_LAST,
      last_paragraph: null,
      comparison: null,
    });
    expect(extractSections(R.TRAILING_EMPTY_FINDINGS, '50000003')?.findings).toBe('The lungs are clear.  Heart size is normal.');
    expect(extractSections(R.FINDINGS_AND_IMPRESSION, '50000004')).toEqual({ impression: R.FAI_IMPRESSION, findings: null, last_paragraph: null, comparison: null });
    expect(extractSections(R.COMPARISON_PARAGRAPHS, '50000005')).toEqual({
      impression: null,
      findings: null,
      last_paragraph: R.CP_LAST_PARAGRAPH,
      comparison: R.CP_COMPARISON,
    });
  });

  it('writes no row (null) for a study with a custom rule', () => {
    expect(extractSections(R.CUSTOM_SECTION, '50913680')).toBeNull();
    expect(extractSections(R.STANDARD, 's50525523')).toBeNull();
  });
});

describe('extractConclusion (create_section_files.py patient_studies)', () => {
  it('prefers impression > findings > last_paragraph > comparison, the last of the name', () => {
    expect(extractConclusion(R.STANDARD, '50000001')).toEqual({ text: R.STANDARD_IMPRESSION, section: 'impression', rule: 'parser' });
    expect(extractConclusion(R.FINDINGS_AND_IMPRESSION, '50000004').text).toBe(R.FAI_IMPRESSION);
    expect(extractConclusion(R.SKIPPED_HEADER, '50000006')).toEqual({ text: R.SKIPPED_FINDINGS, section: 'findings', rule: 'parser' });
    expect(extractConclusion(R.COMPARISON_PARAGRAPHS, '50000005')).toEqual({ text: R.CP_LAST_PARAGRAPH, section: 'last_paragraph', rule: 'parser' });
    expect(extractConclusion(R.TITLE_THEN_PARAGRAPHS, '50000007').text).toBe('The heart is normal in size.  The lungs are clear.\n \n No acute cardiopulmonary process.');
    // Only a comparison section, no paragraphs to cut: the comparison is the conclusion.
    expect(extractConclusion('T\n COMPARISON:  None.\n', '50000008')).toEqual({ text: 'None.', section: 'comparison', rule: 'parser' });
    // Nothing usable: ''.
    expect(extractConclusion('T\n INDICATION:  ___.\n', '50000009')).toEqual({ text: '', section: undefined, rule: 'parser' });
  });

  it("uses a study's custom section name: the last section of that name", () => {
    // s50913680 → 'recommendations' (assets/datasets/mimic-sections-custom.json); 'RECOMMENDATION(S)' → 'recommendations'.
    expect(extractConclusion(R.CUSTOM_SECTION, '50913680')).toEqual({ text: R.CUSTOM_SECTION_TEXT, section: 'recommendations', rule: 'custom-section' });
    // Another study with the same text follows the priority: findings (no impression).
    expect(extractConclusion(R.CUSTOM_SECTION, '50000010').text).toBe('A 6 mm nodule in the right upper lobe is unchanged.');
  });

  it('fails clearly when the custom section is absent (the script would raise ValueError)', () => {
    expect(() => extractConclusion(R.STANDARD, '50913680')).toThrow(/s50913680.*'recommendations'.*preamble, examination/);
  });

  it("slices a study's custom indices [start, end) out of the text, unstripped", () => {
    const text = R.CUSTOM_INDICES_HEAD + R.CUSTOM_INDICES_BODY + R.CUSTOM_INDICES_TAIL;
    expect(R.CUSTOM_INDICES_HEAD.length).toBe(201);
    expect(R.CUSTOM_INDICES_BODY.length).toBe(148);
    // s50525523 → [201, 349]
    expect(extractConclusion(text, 's50525523')).toEqual({ text: R.CUSTOM_INDICES_BODY, section: undefined, rule: 'custom-indices' });
    // s58235663 → [0, 0]: "no findings at all in the entire report"
    expect(extractConclusion(text, '58235663').text).toBe('');
  });
});

describe('customMimicCxrRules (assets/datasets/mimic-sections-custom.json)', () => {
  it('holds the 23 section names and 31 index pairs of section_parser.py, with the MIT notice', async () => {
    const rules = customMimicCxrRules();
    expect(Object.keys(rules.sectionNames)).toHaveLength(23);
    expect(Object.keys(rules.indices)).toHaveLength(31);
    expect(rules.sectionNames.s56451190).toBe('note');
    expect(rules.sectionNames.s51491012).toBe('history');
    expect(rules.indices.s56412866).toEqual([522, 822]);
    expect(Object.entries(rules.indices).filter(([, v]) => v[0] === 0 && v[1] === 0)).toHaveLength(8);
    const { readFile } = await import('node:fs/promises');
    const raw = await readFile(customRulesFile(), 'utf8');
    expect(raw).toContain('MIT License');
    expect(raw).toContain('Copyright (c) 2019 MIT Laboratory for Computational Physiology');
    expect(raw).toContain('MIT-LCP/mimic-cxr txt/section_parser.py');
  });

  it('rejects malformed rules, naming the key and what was found', () => {
    expect(() => parseCustomRules([], 'r.json')).toThrow("r.json: expected a JSON object with customSectionNames and customIndices, found an array of 0");
    expect(() => parseCustomRules({ customSectionNames: {}, customIndices: { s1: [5, 2] } }, 'r.json')).toThrow(
      'r.json: customIndices.s1: expected [start, end] with integers 0 <= start <= end, found an array of 2',
    );
    expect(() => parseCustomRules({ customSectionNames: { s1: 3 }, customIndices: {} }, 'r.json')).toThrow('r.json: customSectionNames.s1: expected a section name, found number 3');
    expect(() => parseCustomRules({ customSectionNames: {} }, 'r.json')).toThrow(DataError);
  });

  it('lets a caller pass other rules', () => {
    const rules = parseCustomRules({ customSectionNames: { s1: 'indication' }, customIndices: {} });
    expect(extractConclusion(R.STANDARD, '1', rules)).toEqual({
      text: '___ year old woman with cough and fever, evaluate for pneumonia.',
      section: 'indication',
      rule: 'custom-section',
    });
    expect(extractConclusion(R.CUSTOM_SECTION, '50913680', rules).rule).toBe('parser');
  });
});

describe('readReportText', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cxf-sections-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads universal newlines as Python text mode does: CRLF and lone CR become LF', async () => {
    const f = path.join(dir, 'crlf.txt');
    await writeFile(f, R.STANDARD.replace(/\n/g, '\r\n'));
    expect(await readReportText(f)).toBe(R.STANDARD);
    await writeFile(f, 'a\rb\r\n\r\nc\n');
    expect(await readReportText(f)).toBe('a\nb\n\nc\n');
    expect(extractSections(await readReportText(path.join(dir, 'crlf.txt')), '1')).toEqual(extractSections('a\nb\n\nc\n', '1'));
  });

  it('keeps a byte order mark, as Python\'s utf-8 codec does', async () => {
    const f = path.join(dir, 'bom.txt');
    await writeFile(f, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('x\n')]));
    expect(await readReportText(f)).toBe('\ufeffx\n');
  });

  it('reads the same synchronously, with undefined for a missing file', async () => {
    const f = path.join(dir, 'sync.txt');
    await writeFile(f, 'a\r\nb\rc');
    expect(readReportTextSync(f)).toBe('a\nb\nc');
    expect(readReportTextSync(f)).toBe(await readReportText(f));
    expect(readReportTextSync(path.join(dir, 'none.txt'))).toBeUndefined();
    expect(() => readReportTextSync(dir)).toThrow(`${dir}: cannot read the report (EISDIR`);
  });

  it('names the file when it is missing or not UTF-8', async () => {
    const bad = path.join(dir, 'bad.txt');
    await writeFile(bad, Buffer.from([0x41, 0xff, 0x42]));
    await expect(readReportText(bad)).rejects.toThrow(`${bad}: the report is not valid UTF-8 text`);
    expect(() => readReportTextSync(bad)).toThrow(`${bad}: the report is not valid UTF-8 text`);
    await expect(readReportText(path.join(dir, 'none.txt'))).rejects.toThrow(`${path.join(dir, 'none.txt')}: report file not found`);
  });
});

describe('agreement with MIT-LCP section_parser.py / create_section_files.py (recorded outputs)', () => {
  it('reproduces section_text, the conclusion and the sectioned row of all 100 generated texts', async () => {
    const ref = JSON.parse(await readFile(REFERENCE, 'utf8')) as { cases: ReferenceCase[] };
    expect(ref.cases).toHaveLength(100);
    let errors = 0;
    for (const c of ref.cases) {
      expect(sectionText(c.text), c.text).toEqual({ sections: c.sections, names: c.names, starts: c.starts });
      if (typeof c.conclusion === 'string') expect(extractConclusion(c.text, c.study).text, c.text).toBe(c.conclusion);
      else {
        errors++;
        expect(() => extractConclusion(c.text, c.study)).toThrow(`its custom rule names section '${c.conclusion.error}'`);
      }
      expect(extractSections(c.text, c.study), c.text).toEqual(c.sectioned);
    }
    // The recording covers every path: custom-section failures, custom-rule studies, the fallbacks, astral text.
    expect(errors).toBe(3);
    expect(ref.cases.filter((c) => c.sectioned === null)).toHaveLength(19);
    expect(ref.cases.filter((c) => c.names.includes('last_paragraph')).length).toBeGreaterThan(10);
    expect(ref.cases.filter((c) => c.names[0] === 'full report').length).toBeGreaterThan(5);
    expect(ref.cases.filter((c) => /[\uD800-\uDFFF]/.test(c.text)).length).toBeGreaterThan(5);
  });
});
