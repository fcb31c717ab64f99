/** `cxformer report RUN`: the run's report.html (src/report), from its files only: no LibTorch. */
import { writeRunReport } from '../../report/index.js';
import { type Args } from './common.js';

export async function run(a: Args): Promise<number> {
  const res = await writeRunReport(String(a.run), a.out !== undefined ? { out: String(a.out) } : {});
  if (!a.quiet) process.stdout.write(`report (${res.kind}): ${res.file}\n`);
  return 0;
}

/**
 * The page at the end of a run (finetune, evaluate; src/report autoRunReport): its path through `say` (the command's
 * quiet-aware output), a failure as a warning on stderr naming the file, never the run's failure; off with
 * CXFORMER_REPORT=0.
 */
export async function reportAtEnd(dir: string, say: (msg: string) => void): Promise<void> {
  const { autoRunReport } = await import('../../report/index.js');
  const file = await autoRunReport(dir, (m) => process.stderr.write(`${m}\n`));
  if (file !== null) say(`report page: ${file}`);
}
