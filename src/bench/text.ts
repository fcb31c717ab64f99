/**
 * Text-metric benchmark (issue #15): BLEU (pycocoevalcap and sacrebleu 13a), ROUGE-L (pycocoevalcap and rouge-score
 * with the Porter stemmer) and CIDEr-D on generated radiology report pairs, corpus and per-segment scores as the
 * packages compute them. Prints the machine line and a Markdown table (median of several runs after a warm-up) and
 * writes bench-results/text.json. Not a test.
 *
 * The pairs come from a small seeded generator of findings sentences (heart, lungs, pleura, nodules, devices,
 * bones), 3-7 sentences per reference; the hypothesis is the reference perturbed (sentences dropped, replaced,
 * swapped, words changed) or another report. BENCH_TEXT_DUMP=FILE writes the pairs as JSON
 * (`[{ hyp, refs: [ref] }, …]`) so the Python packages can be timed on the same text.
 *
 * Also timed: the rules labeler (cheXpert-lite) on both sides plus the label F1 variants (CheXbert 14 and 5, micro and
 * macro, uncertain negative and positive), and the whole `evaluateReports` under the `all` protocol with the rules
 * labeler and 1,000 bootstrap resamples (what `cxformer evaluate --task report` computes).
 *
 * With TEXT_REF_PY set to a Python that has pycocoevalcap 1.2, sacrebleu 2.6.0 and rouge-score 0.1.2 installed,
 * scripts/bench-text-reference.py times the packages on the same pairs in the same run, and the ratio is recorded
 * (BENCHMARKS.md, "Report-generation metrics").
 *
 * Env: BENCH_TEXT_PAIRS (default 3000), BENCH_RUNS (default 5), BENCH_TEXT_SEED (default 15), BENCH_TEXT_DUMP, TEXT_REF_PY.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32 } from '../data/random.js';
import { ciderD } from '../eval/text/cider.js';
import { pycocoBleu, sacreBleu } from '../eval/text/bleu.js';
import { pycocoRougeLCorpus, rougeScoreLCorpus } from '../eval/text/rouge.js';
import { rulesLabeler } from '../eval/labelers/rules.js';
import { CHEXBERT_14, CHEXBERT_5 } from '../eval/labelers/types.js';
import { labelF1 } from '../eval/text/label-f1.js';
import { evaluateReports } from '../rrg/evaluate.js';
import { machineLine, median } from './flops.js';

type Rnd = () => number;
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

const SIDES = ['right', 'left'] as const;
const ZONES = ['upper', 'mid', 'lower'] as const;
const SIZES = ['small', 'moderate', 'large', 'trace'] as const;

/** One findings sentence of a random topic. */
function sentence(rnd: Rnd): string {
  const side = pick(rnd, SIDES);
  const zone = pick(rnd, ZONES);
  const size = pick(rnd, SIZES);
  const mm = 3 + Math.floor(rnd() * 25);
  const templates: Array<() => string> = [
    () => pick(rnd, ['The heart size is normal.', 'The heart is mildly enlarged.', 'Moderate cardiomegaly is unchanged.', 'The cardiomediastinal silhouette is within normal limits.']),
    () => pick(rnd, ['The lungs are clear.', 'No focal consolidation is seen.', `Patchy opacity in the ${side} ${zone} zone may reflect atelectasis or pneumonia.`, 'There is mild pulmonary vascular congestion without frank edema.']),
    () => pick(rnd, ['No pleural effusion.', `${size[0]!.toUpperCase()}${size.slice(1)} ${side} pleural effusion.`, `There is a ${size} ${side} pleural effusion with adjacent atelectasis.`, 'Bilateral small pleural effusions are unchanged.']),
    () => pick(rnd, ['No pneumothorax.', `Small ${side} apical pneumothorax.`, 'There is no pneumothorax.', `A ${size} ${side} pneumothorax is new since the prior study.`]),
    () => pick(rnd, ['No pulmonary nodule.', `A ${mm} mm nodule in the ${side} ${zone} zone.`, `Calcified granuloma in the ${side} ${zone} lung, unchanged.`]),
    () => pick(rnd, [`The endotracheal tube terminates ${(2 + rnd() * 4).toFixed(1)} cm above the carina.`, 'A right internal jugular central venous catheter ends in the SVC.', 'The nasogastric tube courses below the diaphragm.', 'Sternotomy wires are intact.']),
    () => pick(rnd, ['No acute osseous abnormality.', 'Degenerative changes of the thoracic spine.', `Old healed fracture of the ${side} ${4 + Math.floor(rnd() * 6)}th rib.`]),
    () => 'No acute cardiopulmonary process.',
  ];
  return pick(rnd, templates)();
}

function report(rnd: Rnd): string[] {
  const n = 3 + Math.floor(rnd() * 5);
  return Array.from({ length: n }, () => sentence(rnd));
}

/** `n` (hypothesis, reference) pairs, deterministic for a seed. */
function generatePairs(n: number, seed: number): Array<{ hyp: string; refs: string[] }> {
  const rnd = mulberry32(hashSeed(seed, 15));
  const refs = Array.from({ length: n }, () => report(rnd));
  return refs.map((ref, i) => {
    const r = rnd();
    let hyp: string[];
    if (r < 0.1) hyp = refs[(i + 1 + Math.floor(rnd() * (n - 1))) % n] as string[]; // another report
    else {
      hyp = ref.slice();
      if (rnd() < 0.5 && hyp.length > 1) hyp.splice(Math.floor(rnd() * hyp.length), 1); // drop a sentence
      if (rnd() < 0.5) hyp[Math.floor(rnd() * hyp.length)] = sentence(rnd); // replace one
      if (rnd() < 0.3 && hyp.length > 1) hyp.reverse(); // reorder
      if (rnd() < 0.4) {
        const k = Math.floor(rnd() * hyp.length);
        hyp[k] = (hyp[k] as string).replace(/\b(small|no|mild|right|left)\b/i, (w) => pick(rnd, ['large', 'mild', 'minimal', w]));
      }
    }
    return { hyp: hyp.join(' '), refs: [ref.join(' ')] };
  });
}

async function main() {
  const n = Number(process.env.BENCH_TEXT_PAIRS ?? 3000);
  const runs = Number(process.env.BENCH_RUNS ?? 5);
  const seed = Number(process.env.BENCH_TEXT_SEED ?? 15);
  const pairs = generatePairs(n, seed);
  const refPy = process.env.TEXT_REF_PY;
  const tmp = refPy ? await mkdtemp(path.join(tmpdir(), 'cxf-bench-text-')) : undefined;
  const dump = process.env.BENCH_TEXT_DUMP ?? (tmp ? path.join(tmp, 'pairs.json') : undefined);
  if (dump) await writeFileAtomic(dump, `${JSON.stringify(pairs)}\n`);
  const hyps = pairs.map((p) => p.hyp);
  const refs = pairs.map((p) => p.refs);
  const tasks: Array<[string, () => unknown]> = [
    ['BLEU pycocoevalcap Bleu(4)', () => pycocoBleu(hyps, refs)],
    ['BLEU sacrebleu corpus_bleu (13a)', () => sacreBleu(hyps, refs)],
    ['ROUGE-L pycocoevalcap Rouge', () => pycocoRougeLCorpus(hyps, refs)],
    ['ROUGE-L rouge-score (stemmer)', () => rougeScoreLCorpus(hyps, refs, { stemmer: true })],
    ['CIDEr-D pycocoevalcap Cider', () => ciderD(hyps, refs)],
  ];
  const labeler = rulesLabeler();
  const labelTask = (): unknown => {
    const h = labeler.label(hyps);
    const r = labeler.label(refs.map((x) => x[0] as string));
    for (const uncertain of ['negative', 'positive'] as const) {
      labelF1(r, h, { classes: CHEXBERT_14, uncertain });
      labelF1(r, h, { classes: CHEXBERT_14, subset: CHEXBERT_5, uncertain });
    }
    return h;
  };
  const evalPairs = pairs.map((p, i) => ({ id: String(i), hypothesis: p.hyp, references: p.refs }));
  const extra: Array<[string, () => unknown]> = [
    ['rules labeler (both sides) + label F1 (14/5, micro/macro, uncertain -/+)', labelTask],
    ['evaluateReports: protocol all + rules labeler + 1,000 bootstrap resamples', () => evaluateReports(evalPairs, { protocol: 'all', labels: { labeler }, bootstrap: 1000 })],
  ];
  const machine = machineLine();
  process.stderr.write(`${machine}; node ${process.version}; ${n} pairs, median of ${runs} runs\n`);
  const rows: Array<{ metric: string; median_s: number; runs_s: number[] }> = [];
  for (const [name, fn] of [...tasks, ...extra]) {
    fn(); // warm-up (JIT)
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      fn();
      times.push((performance.now() - t) / 1000);
    }
    rows.push({ metric: name, median_s: median(times), runs_s: times });
  }
  const total = rows.slice(0, tasks.length).reduce((s, r) => s + r.median_s, 0);
  const scores = {
    pycoco_bleu4: pycocoBleu(hyps, refs).corpus[3],
    sacrebleu_13a: sacreBleu(hyps, refs).score,
    pycoco_rouge_l: pycocoRougeLCorpus(hyps, refs).corpus,
    rouge_score_l_stem: rougeScoreLCorpus(hyps, refs, { stemmer: true }).meanF,
    pycoco_cider: ciderD(hyps, refs).corpus,
  };
  console.log(`| metric (${n} pairs) | median s |\n|---|---|`);
  for (const r of rows) console.log(`| ${r.metric} | ${r.median_s.toFixed(4)} |`);
  console.log(`| all five | ${total.toFixed(4)} |`);
  console.log(`\nscores: ${JSON.stringify(scores)}`);
  // The reference packages on the same pairs, in the same run.
  let reference: { table: string; total_s: number; ratio: number } | undefined;
  if (refPy && dump) {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'bench-text-reference.py');
    const out = execFileSync(refPy, [script, dump, String(Math.max(1, Math.min(runs, 3)))], { encoding: 'utf8' });
    const m = /\| all five \| ([0-9.]+) \|/.exec(out);
    if (!m) throw new Error(`bench-text-reference.py printed no total:\n${out}`);
    reference = { table: out.trim(), total_s: Number(m[1]), ratio: Number(m[1]) / total };
    console.log(`\nPython reference packages, same pairs (${refPy}):\n${out.trim()}\nspeed-up for the five: ${reference.ratio.toFixed(1)}x`);
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
  await mkdir('bench-results', { recursive: true });
  await writeFileAtomic('bench-results/text.json', `${JSON.stringify({ machine, node: process.version, pairs: n, seed, runs, rows, total_s: total, scores, ...(reference ? { reference } : {}) }, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:text: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
