/**
 * The TypeScript collective helpers (src/distributed/group.ts) against a scripted process group (what each collective
 * returns is given; the native group itself is tested in train-dist.test.ts): all-or-nothing phases, the agreed
 * stop, integer broadcast, and naming the peer of a 2-rank group in communication errors.
 */
import { describe, expect, it } from 'vitest';
import { agreeStop, allOrNothing, broadcastInt, namePeer, type ProcessGroup } from '../../src/distributed/group.js';
import { CxformerError } from '../../src/native/load.js';

/** A group of `world` whose collectives combine this rank's array with the other ranks' given arrays. */
function scripted(rank: number, world: number, others: Float32Array[]): ProcessGroup & { calls: string[] } {
  const calls: string[] = [];
  const all = (mine: Float32Array) => {
    const list = [...others];
    list.splice(rank, 0, mine);
    return list;
  };
  return {
    rank,
    worldSize: world,
    calls,
    backend: () => 'gloo',
    allReduce: async (d, op) => {
      calls.push(`allReduce ${op}`);
      const sum = all(d).reduce((acc, a) => acc.map((v, i) => v + (a[i] as number)), new Float32Array(d.length));
      return op === 'avg' ? sum.map((v) => v / world) : sum;
    },
    broadcast: async (d, root) => {
      calls.push(`broadcast ${root}`);
      return all(d)[root] as Float32Array;
    },
    allGather: async (d) => {
      calls.push('allGather');
      return all(d);
    },
    barrier: async () => void calls.push('barrier'),
    destroy: () => undefined,
  };
}

describe('allOrNothing', () => {
  it('returns the phase value when every rank succeeded', async () => {
    const pg = scripted(1, 3, [Float32Array.of(0), Float32Array.of(0)]);
    await expect(allOrNothing(pg, 'loading the data', async () => 42)).resolves.toBe(42);
    expect(pg.calls).toEqual(['allGather']);
    await expect(allOrNothing(null, 'x', async () => 'single')).resolves.toBe('single');
  });
  it('the failing rank rethrows its own error, the others name the failed ranks', async () => {
    const mine = new Error('unreadable manifest');
    await expect(allOrNothing(scripted(0, 2, [Float32Array.of(0)]), 'loading the data', async () => Promise.reject(mine))).rejects.toBe(mine);
    const other = scripted(0, 3, [Float32Array.of(1), Float32Array.of(1)]);
    await expect(allOrNothing(other, 'loading the data', async () => 1)).rejects.toThrow('loading the data failed on rank 1, 2 (see that rank\'s output); stopping rank 0 too');
  });
});

describe('agreeStop and broadcastInt', () => {
  it('any rank asking to stop stops every rank', async () => {
    expect(await agreeStop(scripted(0, 2, [Float32Array.of(0)]), false)).toBe(false);
    expect(await agreeStop(scripted(0, 2, [Float32Array.of(1)]), false)).toBe(true);
    expect(await agreeStop(scripted(1, 2, [Float32Array.of(0)]), true)).toBe(true);
  });
  it("every rank gets rank 0's integer exactly, beyond float32's 2^24", async () => {
    for (const v of [0, 7, 16777217, 2 ** 40 + 3]) {
      const hi = Math.floor(v / 16777216);
      const rank0 = Float32Array.of(hi, v - hi * 16777216);
      expect(await broadcastInt(scripted(1, 2, [rank0]), 123)).toBe(v);
      expect(await broadcastInt(scripted(0, 2, [Float32Array.of(9, 9)]), v)).toBe(v);
    }
  });
});

describe('namePeer', () => {
  // The native message starts with the reporting rank.
  const lost = (r = 0) => new CxformerError('CXF_DIST', `agree on stopping: rank ${r}: all_reduce(sum, 1 values) failed: Read error [127.0.0.1]:11423: Connection reset by peer`);
  it('names the only other rank of a 2-rank group', () => {
    const e = namePeer(lost(), scripted(0, 2, [])) as Error;
    expect(e.message).toMatch(/Connection reset by peer \(peer: rank 1, the only other rank\)$/);
    expect((namePeer(lost(1), scripted(1, 2, [])) as Error).message).toMatch(/\(peer: rank 0, the only other rank\)$/);
  });
  it('leaves other errors, larger groups and messages that already name the peer alone', () => {
    const e = lost();
    expect(namePeer(e, scripted(0, 3, []))).toBe(e);
    expect(namePeer(e, null)).toBe(e);
    const cfg = new CxformerError('CXF_CONFIG', 'bad');
    expect(namePeer(cfg, scripted(0, 2, []))).toBe(cfg);
    const named = new CxformerError('CXF_DIST', 'rank 1 is gone (connection reset)');
    expect(namePeer(named, scripted(0, 2, []))).toBe(named);
  });
});
