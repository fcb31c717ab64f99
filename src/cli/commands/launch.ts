/**
 * `cxformer launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] -- <train|finetune …>`:
 * starts the ranks of this node (src/distributed/launch.ts). Never loads the native addon itself; each rank is a
 * `cxformer` child process that reads its place in the run from the torchrun variables (src/distributed/env.ts).
 */
import { fileURLToPath } from 'node:url';
import { hideBin } from 'yargs/helpers';
import type { Args } from './common.js';

/** The words after the first `--` of this process's command line, exactly as typed (yargs would coerce numbers). */
function childArgs(a: Args): string[] {
  const raw = hideBin(process.argv);
  const i = raw.indexOf('--');
  return i >= 0 ? raw.slice(i + 1) : a._.slice(1).map(String);
}

export async function run(a: Args): Promise<number> {
  const { launch, describeExit } = await import('../../distributed/launch.js');
  const words = childArgs(a);
  const exec = Boolean(a.exec);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const command = exec ? (words[0] as string) : process.execPath;
  const args = exec ? words.slice(1) : [...process.execArgv, main, ...words];
  const res = await launch({
    nprocPerNode: a['nproc-per-node'] as number,
    nnodes: a.nnodes as number,
    nodeRank: a['node-rank'] as number,
    masterAddr: a['master-addr'] as string | undefined,
    masterPort: a['master-port'] as number | undefined,
    graceMs: (a['grace-s'] as number) * 1000,
    prefix: a.prefix !== false,
    command,
    args,
    onStart: (ranks, r) => {
      process.stderr.write(
        `launch: ${ranks.length} rank(s) of ${r.worldSize} on this node (ranks ${ranks[0]?.rank}..${ranks[ranks.length - 1]?.rank}), master ${r.masterAddr}:${r.masterPort}\n`,
      );
    },
  });
  if (res.failed && !res.failed.stopped) {
    process.stderr.write(`launch: failed: rank ${res.failed.rank} ${describeExit(res.failed)}\n`);
  } else if (res.code !== 0) {
    // Stopped by a forwarded signal: how each rank ended (all 130 = a clean, agreed stop of cxformer train).
    process.stderr.write(`launch: stopped: ${res.exits.map((e) => `rank ${e.rank} ${describeExit(e)}`).join(', ')}\n`);
  } else {
    process.stderr.write(`launch: all ${res.exits.length} rank(s) finished\n`);
  }
  return res.code;
}
