/**
 * The README's examples run as written (issue #14; run from test/train/phantom-pretrain.test.ts, see there): every `npx cxformer …` line of the README's code blocks is
 * either run here, in README order, in an empty folder (so `runs/demo` is the demo run an earlier line made), or
 * named below with the reason it is not (data or weights the machine does not have, or too long for CI). A new
 * README command therefore has to be placed in one of the lists; a run command that fails fails the test.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../unit/golden.js';
import { readmeCommands, shellWords } from './shell-lines.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');

/** Lines that need what a fresh machine lacks: a placeholder (…, path/to, models/, /data/), a cluster, real inputs. */
const EXTERNAL = [/…/, /\bpath\/to\//, /\bmodels\//, /\/data\//, /^srun /, /\bchest1\.png\b/, /\bmodel\.safetensors\b/, /\bhf-folder\b/, /--nproc-per-node [48]\b/,
  // outputs of lines above that need external data (runs/ft: a CheXpert fine-tuning)
  /\bruns\/ft\//];
/** Runnable on the built-in data but too long for CI (minutes each on 2 cores); the others of their kind run. */
const LONG = [
  'npx cxformer synth --out phantoms/ --n 500 --seed 1', // synth runs below (60 images)
  'npx cxformer synth --out phantoms/ --n 1500 --seed 11',
  'npx cxformer finetune --config phantom --mode full', // full fine-tuning: test/train/finetune-full.test.ts
  'npx cxformer evaluate --config phantom --weights runs/phantom-ft/best/model', // needs the line above
  'npx cxformer launch --nproc-per-node 2 -- train --config demo', // test/distributed/launch.test.ts
  // The report captioner (minutes at 224 px): test/train/report-task.test.ts, report-phantom.test.ts; the two after it read its run.
  'npx cxformer synth --out runs/rrg-data --n 1700',
  'npx cxformer finetune --config phantom_report',
  'npx cxformer generate --model runs/rrg/best',
  'npx cxformer evaluate --task report --predictions runs/rrg/',
  // The LLaVA recipe's run needs an LM folder (the line above it is external): test/train/llava-task.test.ts.
  'npx cxformer generate --model runs/llava/',
  'npx cxformer export runs/llava ',
];

const skipReason = (line: string) =>
  EXTERNAL.some((r) => r.test(line)) ? 'external' : LONG.some((p) => line.startsWith(p)) ? 'long' : null;

/** The suite; called by one test file (module-level code of a non-test file registers nothing by itself). */
export function describeReadmeExamples(): void {
  describe('README examples', () => {
    let cwd: string;
    beforeAll(async () => {
      cwd = await mkdtemp(path.join(tmpdir(), 'cxf-readme-'));
    });
    afterAll(async () => {
      await rm(cwd, { recursive: true, force: true });
    });

    const lines = readmeCommands(readFileSync(path.join(repoRoot, 'README.md'), 'utf8'));
    const run = lines.filter((l) => skipReason(l) === null);

    it('the lists above still match the README (each LONG entry names a README line)', () => {
      for (const p of LONG) expect(lines.some((l) => l.startsWith(p)), p).toBe(true);
      // The representative subset: pretraining demo, its report and export, probe + evaluation, segmentation.
      for (const must of ['train --config demo output=runs/demo', 'report runs/demo', 'export runs/demo', 'finetune --weights runs/demo/exported', 'finetune --config phantom_seg']) {
        expect(run.some((l) => l.includes(must)), must).toBe(true);
      }
    });

    it('every other README command runs as written, in order', async () => {
      for (const line of run) {
        const words = shellWords(line).slice(2); // without `npx cxformer`
        // The demo takes ~3 min alone on 2 cores, several times that beside another test file's training.
        const r = spawnSync(process.execPath, [MAIN, ...words], { cwd, encoding: 'utf8', timeout: 1_500_000 });
        expect(r.status, `${line}\n${r.stderr}`).toBe(0);
      }
      // What the lines promise exists: the demo's exported teacher and report page, the probe's and the
      // segmentation's evaluation reports.
      for (const f of ['runs/demo/exported/config.json', 'runs/demo/report.html', 'exported/config.json', 'runs/probe-eval/report.md', 'runs/seg-eval/report.md']) {
        expect(existsSync(path.join(cwd, f)), f).toBe(true);
      }
      const log = await readFile(path.join(cwd, 'runs/demo/train.log'), 'utf8');
      expect(log).toMatch(/the baseline: kNN macro AUROC/);
      // The demo visibly learns: its last linear probe beats the untrained encoder's (the baseline, same architecture
      // and data) by more than 0.01 macro AUROC. Measured (BENCHMARKS.md, "The demo"): +0.020 for this seed (0),
      // +0.012 and +0.030 for seeds 1 and 2. A deterministic run for a thread count: a regression check.
      const probes = (await readFile(path.join(cwd, 'runs/demo/metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { iteration: number; probe_baseline?: boolean; probe_linear_macro_auroc?: number })
        .filter((r) => r.probe_linear_macro_auroc !== undefined);
      expect(probes.map((p) => [p.iteration, p.probe_baseline ?? false])).toEqual([[0, true], [49, false], [99, false], [149, false], [199, false]]);
      expect(probes[4]!.probe_linear_macro_auroc!).toBeGreaterThan(probes[0]!.probe_linear_macro_auroc! + 0.01);
    }, 3_000_000);
  });
}
