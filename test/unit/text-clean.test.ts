/**
 * R2Gen's report cleaners (cuhksz-nlp/R2Gen `modules/tokenizers.py`): hand-written expectations for each rule, and
 * outputs recorded from R2Gen's own functions.
 */
import { describe, expect, it } from 'vitest';

import { r2genClean, r2genCleanIuXray } from '../../src/eval/text/clean.js';

describe('r2genClean (clean_report_mimic_cxr): hand-written cases', () => {
  it("always ends with ' .': one sentence", () => {
    expect(r2genClean('No effusion.')).toBe('no effusion .');
    expect(r2genClean('No effusion')).toBe('no effusion .');
  });
  it("the regex range ':-\\[' strips ; < = > ? @ too, while - # $ ~ | and digits stay", () => {
    expect(r2genClean('a<b=c>d?e@f;g:h[i]j')).toBe('abcdefghij .');
    expect(r2genClean('T7-T8 #3 $5 ~x |y')).toBe('t7-t8 #3 $5 ~x |y .');
  });
  it("sentences split on '. ' and joined with ' . '; numbering removed; '..' collapsed", () => {
    expect(r2genClean('1. Heart normal. 2. Lungs clear..')).toBe('heart normal . lungs clear .');
  });
  it('quotes, slashes, backslashes and apostrophes are removed; underscores vanish after strip(), leaving a space', () => {
    // '___' → '_' (report level), strip() runs before the character class deletes '_' and '.', so 'at _.' → 'at '.
    expect(r2genClean('Patient\'s "AP/PA" view\\ at ___.')).toBe('patients appa view at  .');
  });
  it("empty or blank report: ' .' (the empty sentence is kept: R2Gen's `!= []` filter is always true)", () => {
    expect(r2genClean('')).toBe(' .');
    expect(r2genClean(' \n ')).toBe(' .');
    expect(r2genClean('A. . B.')).toBe('a .  . b .');
  });
  it('rejects a non-string report', () => {
    expect(() => r2genClean(undefined as unknown as string)).toThrow(/must be a string, got undefined/);
  });
});

describe('R2Gen cleaners: outputs recorded from R2Gen', () => {
  // [input, clean_report_mimic_cxr, clean_report_iu_xray]: produced by running the two functions copied verbatim
  // from cuhksz-nlp/R2Gen modules/tokenizers.py (as plain functions) under Python 3.11.
  const cases: Array<[string, string, string]> = [
    ['No acute cardiopulmonary process.', 'no acute cardiopulmonary process .', 'no acute cardiopulmonary process .'],
    ['', ' .', ' .'],
    ['   ', ' .', ' .'],
    [
      'FINDINGS: The lungs are clear.  Heart size is normal.\nNo pleural effusion or pneumothorax.',
      'findings the lungs are clear . heart size is normal . no pleural effusion or pneumothorax .',
      'findings the lungs are clear . heart size is normal\nno pleural effusion or pneumothorax .',
    ],
    [
      '1. No acute process. 2. Stable cardiomegaly. 3. Small left effusion.',
      'no acute process . stable cardiomegaly . small left effusion .',
      'no acute process . stable cardiomegaly . small left effusion .',
    ],
    [
      'Pressure <= 20 mmHg, ratio a=b > c? e-mail @ 10:45 [sic] {x} (y)',
      'pressure  20 mmhg ratio ab  c e-mail  1045 sic x y .',
      'pressure  20 mmhg ratio ab  c e-mail  1045 sic x y .',
    ],
    ['ETT tip 4.5 cm above the carina; NGT in stomach!!', 'ett tip 45 cm above the carina ngt in stomach .', 'ett tip 45 cm above the carina ngt in stomach .'],
    [
      'Patient\'s "small" effusion / atelectasis \\ unchanged...',
      'patients small effusion  atelectasis  unchanged .',
      'patients small effusion  atelectasis  unchanged .',
    ],
    ['Heart size is normal..  The lungs are clear....', 'heart size is normal . the lungs are clear .', 'heart size is normal . the lungs are clear .'],
    ['___ was notified at ___ on ___.', ' was notified at  on  .', ' was notified at  on  .'],
    ['Line 1. Text\nline 2. more', 'line text line . more .', 'line text\nline . more .'],
    [
      'Compared to prior, there is #3 rib fracture ~ 50% $ | mild.',
      'compared to prior there is #3 rib fracture ~ 50 $ | mild .',
      'compared to prior there is #3 rib fracture ~ 50 $ | mild .',
    ],
    ['No effusion.. No pneumothorax', 'no effusion . no pneumothorax .', 'no effusion . no pneumothorax .'],
    ['Cardiomegaly. . Edema.', 'cardiomegaly .  . edema .', 'cardiomegaly .  . edema .'],
    ['A. B. C', 'a . b . c .', 'a . b . c .'],
    [
      'Right-sided PICC line. Tip at cavoatrial junction 2. 3. 4. 5. done',
      'right-sided picc line . tip at cavoatrial junction . done .',
      'right-sided picc line . tip at cavoatrial junction . done .',
    ],
  ];
  it.each(cases)('%j', (input, mimic, iu) => {
    expect(r2genClean(input)).toBe(mimic);
    expect(r2genCleanIuXray(input)).toBe(iu);
  });
});
