/**
 * cheXpert-lite (the rules labeler): the four labelled examples of stanfordmlgroup/chexpert-labeler's
 * `labeled_reports.csv` (commit 44ddeb3, MIT; the CheXpert labeler's own output, copied here), hand-written
 * sentences with known labels (negation, uncertainty, multiple mentions, scopes ended by punctuation and
 * terminators), the aggregation rules of `stages/aggregate.py`, the shipped data files, and agreement with the exact
 * phantom labeler on the golden phantom reports.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHEXPERT_LITE_DIR, cleanReport, labelReportRules, rulesLabeler, splitSentences } from '../../src/eval/labelers/rules.js';
import { CHEXBERT_14, type LabelCell } from '../../src/eval/labelers/types.js';
import { parseCsv } from '../../src/data/csv.js';
import { phantomLabeler } from '../../src/eval/labelers/phantom.js';
import { goldenFile, repoRoot } from './golden.js';

/** The labelled classes of a report, as {class: cell} (blank classes left out). */
function labels(text: string): Record<string, LabelCell> {
  const { cells } = labelReportRules(text);
  return Object.fromEntries(CHEXBERT_14.map((c, i) => [c, cells[i] ?? null] as const).filter(([, v]) => v !== null));
}

describe("chexpert-labeler's labeled_reports.csv (its 4 examples)", () => {
  // Reports and labels as in the file (columns No Finding … Support Devices; blanks left out).
  const cases: [string, Record<string, LabelCell>][] = [
    ['Heart size normal and lungs are clear. No edema or pneumonia. No effusion', { 'No Finding': 1, Cardiomegaly: 0, Edema: 0, Pneumonia: 0, 'Pleural Effusion': 0 }],
    [
      '1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n2. Cardiomegaly without overt edema.',
      { Cardiomegaly: 1, Edema: 0, Atelectasis: 1, 'Pleural Effusion': 1 },
    ],
    ['Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.', { 'Lung Opacity': 1, Consolidation: -1, Atelectasis: -1 }],
    ['1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.', { Cardiomegaly: 1 }],
  ];
  for (const [text, want] of cases) it(JSON.stringify(text.slice(0, 50)), () => expect(labels(text)).toEqual(want));
});

describe('hand-written sentences', () => {
  const cases: [string, string, Record<string, LabelCell>][] = [
    ['negation across a list', 'No pleural effusion, pneumothorax, or focal airspace consolidation.', { 'Pleural Effusion': 0, Pneumothorax: 0, Consolidation: 0, 'No Finding': 1 }],
    ['"no evidence of" and a semicolon ends its scope', 'No evidence of pneumothorax; right effusion is present.', { Pneumothorax: 0, 'Pleural Effusion': 1 }],
    ['a period ends a scope', 'No pneumothorax. Effusion.', { Pneumothorax: 0, 'Pleural Effusion': 1 }],
    ['"but" ends a scope', 'No pneumothorax but a small effusion.', { Pneumothorax: 0, 'Pleural Effusion': 1 }],
    ['a new clause ends a scope', 'No pneumothorax is seen and the heart is enlarged.', { Pneumothorax: 0, Cardiomegaly: 1 }],
    ['... but a list goes on', 'Lungs are clear without focal consolidation, effusion, or pneumothorax.', { Consolidation: 0, 'Pleural Effusion': 0, Pneumothorax: 0, 'No Finding': 1 }],
    ['"versus" is uncertain both ways', 'Possible right lower lobe pneumonia versus atelectasis.', { Pneumonia: -1, Atelectasis: -1 }],
    ['pre-negation uncertainty after "though"', 'Left lower lobe opacity likely atelectasis, though infection cannot be excluded.', { 'Lung Opacity': 1, Atelectasis: 1, Pneumonia: -1 }],
    ['support devices: removal is negative', 'Interval removal of the endotracheal tube.', { 'Support Devices': 0, 'No Finding': 1 }],
    ['a comma ends a backward cue', 'The heart is enlarged, lungs are normal.', { Cardiomegaly: 1 }],
    ['backward negation: "is normal" / "within normal limits"', 'Heart size and mediastinal contours are within normal limits.', { Cardiomegaly: 0, 'Enlarged Cardiomediastinum': 0, 'No Finding': 1 }],
    ['backward negation: resolved / removed', 'Pneumothorax has resolved. Right chest tube removed.', { Pneumothorax: 0, 'Support Devices': 0, 'No Finding': 1 }],
    ['pre-negation uncertainty beats negation', 'A small pneumothorax cannot be excluded.', { Pneumothorax: -1 }],
    ['"no new" is uncertain', 'No new consolidation.', { Consolidation: -1 }],
    ['uncertainty cue', 'Possible small pleural effusion.', { 'Pleural Effusion': -1 }],
    ['"borderline" heart size', 'The heart size is borderline.', { Cardiomegaly: -1 }],
    ['stable heart size is uncertain', 'Stable cardiomediastinal silhouette.', { 'Enlarged Cardiomediastinum': -1 }],
    ['vascular congestion is uncertain unless negated', 'Mild pulmonary vascular congestion. No pulmonary edema.', { Edema: -1 }],
    ['CHF adds an uncertain cardiomegaly', 'Findings consistent with CHF.', { Cardiomegaly: -1, Edema: 1 }],
    ['multiple mentions: 0 + 1 → 1', 'No left effusion. Small right effusion.', { 'Pleural Effusion': 1 }],
    ['multiple mentions: 0 + u → u', 'No effusion on the left. Possible right effusion.', { 'Pleural Effusion': -1 }],
    ['multiple mentions: u + 1 → 1', 'Possible left effusion. Definite right effusion.', { 'Pleural Effusion': 1 }],
    ['support devices do not clear No Finding', 'Endotracheal tube in place. Lungs are clear.', { 'Support Devices': 1, 'No Finding': 1 }],
    ['No Finding phrases (other findings) blank it', 'Mild emphysema.', {}],
    ['unmention: pericardial effusion is not a pleural effusion (nor anything else: No Finding)', 'Small pericardial effusion.', { 'No Finding': 1 }],
    ['unmention: "over the heart" is no cardiomegaly mention', 'Pacer leads project over the heart.', { 'Support Devices': 1, 'No Finding': 1 }],
    ['phantom report', 'The heart is enlarged. A 12 mm nodule in the left lower zone. Possible small pleural effusion. No pneumothorax.', {
      Cardiomegaly: 1, 'Lung Lesion': 1, 'Pleural Effusion': -1, Pneumothorax: 0,
    }],
  ];
  for (const [what, text, want] of cases) it(what, () => expect(labels(text)).toEqual(want));
});

describe('cleaning, sentences, labeler', () => {
  it("cleans as chexpert-labeler's Loader.clean", () => {
    expect(cleanReport('Effusion and/or  atelectasis..Heart/lungs,ok.')).toBe('effusion or atelectasis. heart or lungs, ok.');
    expect(splitSentences('a b. c? d! e')).toEqual(['a b.', 'c?', 'd!', 'e']);
  });
  it('labels many reports in order; an empty report is labelled No Finding and reported', () => {
    const l = rulesLabeler();
    expect(l.classes).toEqual(CHEXBERT_14);
    const run = l.analyze(['No pneumothorax.', '  ', 'Cardiomegaly.']);
    expect(run.rows.map((r) => r[CHEXBERT_14.indexOf('No Finding')])).toEqual([1, 1, null]);
    expect(run.rows[2]![CHEXBERT_14.indexOf('Cardiomegaly')]).toBe(1);
    expect(run.diagnostics).toEqual([{ report: 1, kind: 'empty', sentence: '', message: expect.stringContaining('empty report') }]);
  });
  it('ships its data: the MIT phrase lists with their licence, the cues, and package.json "files" includes assets', () => {
    expect(CHEXPERT_LITE_DIR.startsWith(path.join(repoRoot, 'assets'))).toBe(true);
    expect(readFileSync(path.join(CHEXPERT_LITE_DIR, 'phrases', 'LICENSE'), 'utf8')).toMatch(/MIT License\s+Copyright \(c\) 2018 Stanford Machine Learning Group/);
    expect(readdirSync(path.join(CHEXPERT_LITE_DIR, 'phrases', 'mention')).length).toBe(14);
    expect(existsSync(path.join(CHEXPERT_LITE_DIR, 'cues.json'))).toBe(true);
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('assets');
  });
});

describe('cheXpert-lite on the golden phantom reports', () => {
  it('agrees with the exact phantom labeler on every finding cell (Nodule → Lung Lesion) of all 300 reports', async () => {
    const t = parseCsv(await readFile(goldenFile('text/phantom/reports.csv'), 'utf8'));
    const texts = t.rows.map((r) => r[1] as string);
    const exact = phantomLabeler({ classes: 'chexbert14' }).label(texts);
    const rules = rulesLabeler().label(texts);
    let compared = 0;
    for (const c of ['Cardiomegaly', 'Pleural Effusion', 'Lung Lesion', 'Pneumothorax']) {
      const k = CHEXBERT_14.indexOf(c);
      texts.forEach((text, i) => {
        expect(rules[i]![k], `${c}: ${text}`).toBe(exact[i]![k]);
        compared++;
      });
    }
    expect(compared).toBe(1200);
    // The rules labeler also reads "nodular opacity" as Lung Opacity, which the phantom classes do not have.
    const opacity = CHEXBERT_14.indexOf('Lung Opacity');
    expect(rules.filter((r, i) => r[opacity] !== null && !/nodular opacity/i.test(texts[i]!))).toEqual([]);
  });
});
