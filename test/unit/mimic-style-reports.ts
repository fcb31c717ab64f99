/**
 * GENERATED, MIMIC-STYLE report texts for the section-parser and MIMIC report tests, written by hand for this project:
 * no MIMIC-CXR report text is (or may be) in this repository (PhysioNet DUA). They imitate the layout of the
 * official files: a `FINAL REPORT` title, header lines that start with one space (` FINDINGS:`), blank lines written
 * as `\n \n`, lines wrapped with a leading space, and `___` where de-identification removed text.
 *
 * Each text comes with its expected sections, computed by hand from MIT-LCP/mimic-cxr `txt/section_parser.py` and
 * `txt/create_section_files.py` (the reasoning is in the comments).
 */

/** Standard report: every usual header; findings and impression present once. */
export const STANDARD = [
  '                                 FINAL REPORT',
  ' EXAMINATION:  CHEST (PA AND LAT)',
  ' ',
  ' INDICATION:  ___ year old woman with cough and fever, evaluate for pneumonia.',
  ' ',
  ' TECHNIQUE:  Chest PA and lateral',
  ' ',
  ' COMPARISON:  ___',
  ' ',
  ' FINDINGS: ',
  ' ',
  ' The lungs are clear without focal consolidation.  No pleural effusion or',
  ' pneumothorax is seen.  The cardiac silhouette is normal in size.',
  ' ',
  ' IMPRESSION: ',
  ' ',
  ' No acute cardiopulmonary process.',
  '',
].join('\n');

export const STANDARD_FINDINGS = 'The lungs are clear without focal consolidation.  No pleural effusion or\n pneumothorax is seen.  The cardiac silhouette is normal in size.';
export const STANDARD_IMPRESSION = 'No acute cardiopulmonary process.';

/**
 * Two findings headers (the LAST one wins) and ` IMPRESSIONS:` (not in the dictionary; holds 'impression', so it
 * becomes 'impression'). Each header's text starts on its own line after one space.
 */
export const TWO_FINDINGS = [
  '                                 FINAL REPORT',
  ' HISTORY:  ___-year-old man with dyspnea.',
  ' ',
  ' FINDINGS:  PA and lateral views of the chest were obtained.',
  ' ',
  ' FINDINGS:  Heart size is mildly enlarged.  There is mild pulmonary vascular',
  ' congestion.  No focal consolidation.',
  ' ',
  ' IMPRESSIONS:  Mild cardiomegaly and vascular congestion.',
  '',
].join('\n');

export const TWO_FINDINGS_LAST = 'Heart size is mildly enlarged.  There is mild pulmonary vascular\n congestion.  No focal consolidation.';
export const TWO_FINDINGS_IMPRESSION = 'Mild cardiomegaly and vascular congestion.';

/** ` FINDINGS AND IMPRESSION:` is in the dictionary as 'impression': the report has an impression and no findings. */
export const FINDINGS_AND_IMPRESSION = [
  '                                 FINAL REPORT',
  ' EXAMINATION:  CHEST (PORTABLE AP)',
  ' ',
  ' INDICATION:  ___ with fever.',
  ' ',
  ' FINDINGS AND IMPRESSION:  Single portable view of the chest.  Right lower lobe',
  ' opacity concerning for pneumonia.  No large effusion.',
  '',
].join('\n');

export const FAI_IMPRESSION = 'Single portable view of the chest.  Right lower lobe\n opacity concerning for pneumonia.  No large effusion.';

/**
 * The LAST findings header is empty: it is removed, so the earlier findings section is the last one.
 * ` FINDINGS:` at the very end: `\s` matches its '\n', the section text is '' (empty, removed).
 */
export const TRAILING_EMPTY_FINDINGS = [
  '                                 FINAL REPORT',
  ' FINDINGS:  The lungs are clear.  Heart size is normal.',
  ' ',
  ' IMPRESSION:  No acute process.',
  ' ',
  ' FINDINGS:',
  '',
].join('\n');

/**
 * A title-like first header (`CHEST, PA LATERAL:` → 'findings' by the phrase 'chest', and empty → removed), then no
 * findings or impression: the last section (indication) is cut at its first '\n \n' and the rest becomes
 * 'last_paragraph' (section_parser.py's example p10/p10103318/s57408307 has this shape).
 */
export const TITLE_THEN_PARAGRAPHS = [
  '                                 FINAL REPORT',
  ' CHEST, PA LATERAL:',
  ' ',
  ' INDICATION:  ___ with chest pain.',
  ' ',
  ' The heart is normal in size.  The lungs are clear.',
  ' ',
  ' No acute cardiopulmonary process.',
  '',
].join('\n');

/** Sections of TITLE_THEN_PARAGRAPHS, unstripped. */
export const TITLE_SECTIONS = {
  preamble: '                                 FINAL REPORT\n ',
  indication: ' ___ with chest pain.',
  last_paragraph: ' The heart is normal in size.  The lungs are clear.\n \n No acute cardiopulmonary process.\n',
};

/** No findings/impression; the comparison section is last and holds paragraphs: last_paragraph fallback. */
export const COMPARISON_PARAGRAPHS = [
  '                                 FINAL REPORT',
  ' HISTORY:  ___-year-old man with shortness of breath.',
  ' ',
  ' COMPARISON:  Chest radiograph from ___.',
  ' ',
  ' Frontal and lateral views of the chest.  The lungs are clear.',
  ' ',
  ' No acute intrathoracic process.',
  '',
].join('\n');

export const CP_COMPARISON = 'Chest radiograph from ___.';
export const CP_LAST_PARAGRAPH = 'Frontal and lateral views of the chest.  The lungs are clear.\n \n No acute intrathoracic process.';

/**
 * `FINDINGS:` directly followed by a line end: `\s` takes the '\n', the header search resumes after the NEXT line
 * end ("skip past the first newline"), so the ` IMPRESSION:` header on the next line is not seen and its line is
 * part of the findings text.
 */
export const SKIPPED_HEADER = ['                                 FINAL REPORT', ' FINDINGS:', ' IMPRESSION: No acute process.', ''].join('\n');
export const SKIPPED_FINDINGS = 'IMPRESSION: No acute process.';

/** No header at all: one 'full report' section, cut into 'last_paragraph' at its first '\n \n'. */
export const NO_HEADER = 'Portable chest.\n \nLines and tubes are unchanged.\n \nNo new consolidation.\n';

/**
 * For the custom-section rule of study s50913680 ('recommendations'): the conclusion is the LAST
 * ` RECOMMENDATION(S):` section ('recommendation(s)' → 'recommendations' by the dictionary).
 */
export const CUSTOM_SECTION = [
  '                                 FINAL REPORT',
  ' INDICATION:  ___ with a nodule on prior imaging.',
  ' ',
  ' FINDINGS:  A 6 mm nodule in the right upper lobe is unchanged.',
  ' ',
  ' RECOMMENDATION(S):  Follow-up chest CT in 12 months.',
  '',
].join('\n');
export const CUSTOM_SECTION_TEXT = 'Follow-up chest CT in 12 months.';

/** For the custom-indices rule of study s50525523 ([201, 349]): exactly 201 characters, then the 148 taken. */
export const CUSTOM_INDICES_HEAD = [
  '                                 FINAL REPORT',
  ' EXAMINATION:  CHEST (PA AND LAT)',
  ' ',
  ' INDICATION:  ___ year old man, status post fall, now has',
  ' new left chest wall pain.',
  ' ',
  ' COMPARISON:  None.',
  ' ',
  ' RESULT:  ',
].join('\n');
export const CUSTOM_INDICES_BODY = [
  'The lungs are well expanded and clear.  No pleural effusion.  The cardiomediastinal',
  ' silhouette is normal.  No displaced rib fracture is identified.',
].join('\n');
export const CUSTOM_INDICES_TAIL = '\n \n ___, MD\n';
