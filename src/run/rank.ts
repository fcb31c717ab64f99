/**
 * How the ranks of a data-parallel run agree, as every trainer uses it: rank 0 decides and the others follow
 * (resume, best epoch), rank 0 alone writes while every rank learns whether that worked, the shares of an
 * evaluation are gathered so that every rank holds the whole split, and the per-rank debug dump. Without a process
 * group each helper is the plain single-process operation.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { agreeStop, allOrNothing, broadcastInt, type ProcessGroup } from '../distributed/group.js';
import { share } from '../distributed/shard.js';
import { call, CxformerError } from '../native/load.js';

/** Rank 0's integer `value` on every rank (e.g. the iteration to resume from). */
export async function rankZeroInt(pg: ProcessGroup | null, value: number): Promise<number> {
  return pg ? broadcastInt(pg, value) : value;
}

/** True on every rank when any rank wants to stop (one all-reduce of the flag per call); alone, `want` itself. */
export async function stopTogether(pg: ProcessGroup | null, want: boolean): Promise<boolean> {
  return pg ? agreeStop(pg, want) : want;
}

/** Rank 0's `flag` on every rank (a resume decision, an epoch's selection). */
export async function rankZeroDecides(pg: ProcessGroup | null, flag: boolean): Promise<boolean> {
  return pg ? (await broadcastInt(pg, flag ? 1 : 0)) === 1 : flag;
}

/** Runs `write` on rank 0 only; every rank learns whether it worked (see `allOrNothing`). */
export function onRankZero(pg: ProcessGroup | null, what: string, write: () => Promise<unknown>): Promise<void> {
  return allOrNothing(pg, what, async () => {
    if ((pg?.rank ?? 0) === 0) await write();
  });
}

/**
 * Every rank checks that it sees the state file rank 0 resumes from (the run folder must be on a file system all
 * nodes share), and fails them all otherwise.
 */
export function requireShared(pg: ProcessGroup | null, file: string): Promise<void> {
  return allOrNothing(pg, 'finding the state to resume', async () => {
    if (!existsSync(file)) {
      throw new CxformerError('CXF_DIST', `rank ${pg?.rank ?? 0} cannot see ${file} chosen by rank 0: put the output folder on a file system shared by all nodes`);
    }
  });
}

/**
 * Evaluation over every rank: rank r computes rows lo..hi − 1 of n (its `share`), `width` numbers per row, plus
 * `tail` extra numbers (e.g. a loss sum); the shares are all-gathered (padded to one length: the native all-gather
 * needs equal lengths), so every rank returns all n rows in order and the tails of every rank.
 */
export async function gatherRows(
  pg: ProcessGroup | null,
  n: number,
  width: number,
  compute: (lo: number, hi: number) => Promise<{ rows: Float32Array; tail?: number[] }>,
): Promise<{ rows: Float32Array; tails: number[][] }> {
  if (!pg) {
    const r = await compute(0, n);
    return { rows: r.rows, tails: [r.tail ?? []] };
  }
  const W = pg.worldSize;
  const [lo, hi] = share(n, pg.rank, W);
  const mine = await allOrNothing(pg, 'evaluation', () => compute(lo, hi));
  const tailLength = mine.tail?.length ?? 0;
  const most = Math.ceil(n / W) * width;
  const buf = new Float32Array(most + tailLength);
  buf.set(mine.rows);
  buf.set(mine.tail ?? [], most);
  const all = await call('gather evaluation shares', () => pg.allGather(buf));
  const rows = new Float32Array(n * width);
  const tails = all.map((g, r) => {
    const [a, b] = share(n, r, W);
    rows.set(g.subarray(0, (b - a) * width), a * width);
    return [...g.subarray(most, most + tailLength)];
  });
  return { rows, tails };
}

/**
 * Debugging aid (docs/distributed.md): with CXFORMER_DIST_DUMP_DIR set, every rank writes its own final state
 * there as rank-<r>.safetensors, to compare ranks.
 */
export async function dumpRankState(rank: number, write: (file: string) => Promise<unknown>): Promise<void> {
  const dir = process.env.CXFORMER_DIST_DUMP_DIR;
  if (!dir) return;
  await mkdir(dir, { recursive: true });
  await write(path.join(dir, `rank-${rank}.safetensors`));
}
