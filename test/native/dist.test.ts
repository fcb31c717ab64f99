/**
 * The process-group binding (crates/node/src/dist.rs → crates/core/src/dist.rs → c10d in csrc/shim.cc) with two
 * ranks as two groups of this one process on 127.0.0.1: what the 2-process tests (test/distributed) do not reach —
 * option validation, arrays of different lengths on the ranks (c10d alone would silently mis-reduce), a destroyed
 * group, a peer that leaves, NCCL on a CPU device.
 */
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/distributed/launch.js';
import { call, CxformerError, native } from '../../src/native/load.js';

type Group = Awaited<ReturnType<ReturnType<typeof native>['createProcessGroup']>>;

function options(rank: number, port: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 5000, backend: 'gloo', ...extra });
}

async function pair(): Promise<[Group, Group]> {
  const port = await freePort();
  const b = native();
  const [p0, p1] = await Promise.all([b.createProcessGroup(options(0, port)), b.createProcessGroup(options(1, port))]);
  return [p0, p1];
}

async function codeAndMessage(p: Promise<unknown>): Promise<string> {
  try {
    await call('dist', () => p);
  } catch (e) {
    expect(e).toBeInstanceOf(CxformerError);
    return `${(e as CxformerError).code} ${(e as Error).message}`;
  }
  throw new Error('expected a rejection');
}

describe('native process groups (2 ranks in one process)', () => {
  it('reduces, and refuses arrays of different lengths on every rank', async () => {
    const [p0, p1] = await pair();
    try {
      expect([p0.rank, p1.rank, p0.worldSize, p0.backend()]).toEqual([0, 1, 2, 'gloo']);
      const [a, b] = await Promise.all([p0.allReduce(Float32Array.of(1, 2), 'avg'), p1.allReduce(Float32Array.of(3, 4), 'avg')]);
      expect([...a]).toEqual([2, 3]);
      expect([...b]).toEqual([2, 3]);
      const [m0, m1] = await Promise.all([
        codeAndMessage(p0.allReduce(Float32Array.of(1, 2, 3), 'sum')),
        codeAndMessage(p1.allReduce(Float32Array.of(1, 2), 'sum')),
      ]);
      for (const m of [m0, m1]) expect(m).toMatch(/^CXF_DIST .*allReduce: the ranks passed arrays of different lengths \(rank 0: 3, rank 1: 2\)/);
      // The group is still usable afterwards.
      const [g0] = await Promise.all([p0.allGather(Float32Array.of(5)), p1.allGather(Float32Array.of(6))]);
      expect(g0.map((g) => [...g])).toEqual([[5], [6]]);
    } finally {
      p1.destroy();
      p0.destroy();
    }
  });

  it('a peer that leaves fails the collective (naming it and the timeout); a destroyed group refuses work', async () => {
    const [p0, p1] = await pair();
    p1.destroy();
    const m = await codeAndMessage(p0.allReduce(Float32Array.of(1), 'sum'));
    expect(m).toMatch(/^CXF_DIST .*allReduce.*rank 0: all_gather\(1 values\) failed \(timeout 5 s\)/);
    p0.destroy();
    p0.destroy(); // idempotent
    expect(await codeAndMessage(p0.barrier())).toMatch(/^CXF_DIST .*barrier: the process group was destroyed/);
  });

  it('validates its options', async () => {
    const b = native();
    const port = await freePort();
    expect(await codeAndMessage(b.createProcessGroup(options(0, port, { backend: 'mpi' })))).toMatch(
      /^CXF_CONFIG .*backend 'mpi': expected 'gloo', 'nccl' or 'auto'/,
    );
    expect(await codeAndMessage(b.createProcessGroup(options(0, 0)))).toMatch(/^CXF_ARG .*masterPort 0 is not a TCP port/);
    expect(await codeAndMessage(b.createProcessGroup(options(0, port, { ranks: 2 })))).toMatch(/^CXF_ARG .*unknown field `ranks`/);
    expect(await codeAndMessage(b.createProcessGroup(options(2, port)))).toMatch(/^CXF_DIST .*rank 2 is outside \[0, worldSize 2\)/);
    expect(await codeAndMessage(b.createProcessGroup(options(0, port, { backend: 'nccl', device: 'cpu' })))).toMatch(
      /^CXF_DIST .*the NCCL backend needs a CUDA device/,
    );
  });
});
