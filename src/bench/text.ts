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
 * Env: BENCH_TEXT_PAIRS (default 3000), BENCH_RUNS (default 5), BENCH_TEXT_SEED (default 15), BENCH_TEXT_DUMP.
 */
import { mkdir } from 'node:fs/promises';
import { writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32 } from '../data/random.js';
import { ciderD } from '../eval/text/cider.js';
import { pycocoBleu, sacreBleu } from '../eval/text/bleu.js';
import { pycocoRougeLCorpus, rougeScoreLCorpus } from '../eval/text/rouge.js';
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
  const dump = process.env.BENCH_TEXT_DUMP;
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
  const machine = machineLine();
  process.stderr.write(`${machine}; node ${process.version}; ${n} pairs, median of ${runs} runs\n`);
  const rows: Array<{ metric: string; median_s: number; runs_s: number[] }> = [];
  for (const [name, fn] of tasks) {
    fn(); // warm-up (JIT)
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      fn();
      times.push((performance.now() - t) / 1000);
    }
    rows.push({ metric: name, median_s: median(times), runs_s: times });
  }
  const total = rows.reduce((s, r) => s + r.median_s, 0);
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
  await mkdir('bench-results', { recursive: true });
  await writeFileAtomic('bench-results/text.json', `${JSON.stringify({ machine, node: process.version, pairs: n, seed, runs, rows, total_s: total, scores }, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:text: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
