/**
 * The c10d process group of a data-parallel run (native layer: docs/distributed.md "Native layer (c10d)") and
 * the few collective helpers the TypeScript side needs: agreeing on a stop, on a number chosen by rank 0, and
 * on whether a phase succeeded on every rank (so that one rank's error stops all ranks with a message naming it,
 * instead of leaving the others waiting for a collective).
 */
import { describeDistEnv, rankDevice, resolveDistEnv, type DistEnv } from './env.js';
import { call, CxformerError, native } from '../native/load.js';

/** A LibTorch c10d process group (Gloo on CPU, NCCL on CUDA), as the native addon exposes it. */
export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  backend(): string;
  allReduce(data: Float32Array, op: 'sum' | 'avg'): Promise<Float32Array>;
  broadcast(data: Float32Array, root: number): Promise<Float32Array>;
  allGather(data: Float32Array): Promise<Float32Array[]>;
  barrier(): Promise<void>;
  destroy(): void;
}

export interface ProcessGroupOptions {
  /** Seconds to wait for the other ranks (rendezvous and every collective). */
  timeoutS: number;
  /** auto (gloo on cpu, nccl on cuda), gloo or nccl. @default auto */
  backend?: 'auto' | 'gloo' | 'nccl';
  /** The device the rank trains on (after {@link rankDevice}). */
  device: string;
  /** Where this process sits; @default resolveDistEnv() */
  env?: DistEnv;
}

/**
 * Joins the process group described by the environment (torchrun, `cxformer launch` or Slurm variables); rank 0
 * hosts the rendezvous store. Resolves to null for a single process (nothing to join).
 * @throws CxformerError (CXF_DIST) for a port in use, an unreachable master, a world-size mismatch or a timeout
 */
export async function joinProcessGroup(o: ProcessGroupOptions): Promise<ProcessGroup | null> {
  const env = o.env ?? resolveDistEnv();
  if (env.worldSize === 1) return null;
  const bind = native();
  const create = bind.createProcessGroup.bind(bind);
  return call(`process group (${describeDistEnv(env)})`, () =>
    create(
      JSON.stringify({
        rank: env.rank,
        worldSize: env.worldSize,
        masterAddr: env.masterAddr,
        masterPort: env.masterPort,
        timeoutMs: Math.round(o.timeoutS * 1000),
        backend: o.backend ?? 'auto',
        device: o.device,
      }),
    ),
  );
}

/** Distributed settings a downstream run takes from the library (the CLI uses the defaults). */
export interface DistSettings {
  /** Seconds to wait for the other ranks. @default 600 */
  timeoutS?: number;
  /** @default auto */
  backend?: 'auto' | 'gloo' | 'nccl';
}

/**
 * Runs `ranked` as this process's rank of the run the environment describes: picks the rank's device from
 * `deviceSpec`, joins the process group (null for one process), names the peer in a 2-rank communication error,
 * and always leaves the group.
 */
export async function withProcessGroup<T>(
  dist: DistSettings | undefined,
  deviceSpec: string,
  ranked: (env: DistEnv, device: string, pg: ProcessGroup | null) => Promise<T>,
): Promise<T> {
  const env = resolveDistEnv();
  const device = rankDevice(deviceSpec, env);
  const pg = await joinProcessGroup({ env, timeoutS: dist?.timeoutS ?? 600, backend: dist?.backend ?? 'auto', device });
  try {
    return await ranked(env, device, pg);
  } catch (e) {
    throw namePeer(e, pg);
  } finally {
    pg?.destroy();
  }
}

/** True on every rank when any rank asks to stop (one all-reduce of a flag). */
export async function agreeStop(pg: ProcessGroup, stop: boolean): Promise<boolean> {
  const r = await call('agree on stopping', () => pg.allReduce(Float32Array.of(stop ? 1 : 0), 'sum'));
  return (r[0] as number) > 0;
}

/** Rank 0's value of a safe integer on every rank (sent as two float32 halves, exact up to 2^48). */
export async function broadcastInt(pg: ProcessGroup, value: number): Promise<number> {
  const hi = Math.floor(value / 16777216);
  const lo = value - hi * 16777216;
  const r = await call('broadcast from rank 0', () => pg.broadcast(Float32Array.of(hi, lo), 0));
  return (r[0] as number) * 16777216 + (r[1] as number);
}

/**
 * Runs `phase` on every rank, then tells every rank whether it failed anywhere: the failing rank rethrows its own
 * error, the others throw a CXF_DIST error naming the failed rank(s). Keeps ranks from waiting for a collective
 * that a failed rank will never join.
 */
export async function allOrNothing<T>(pg: ProcessGroup | null, what: string, phase: () => Promise<T>): Promise<T> {
  if (!pg) return phase();
  let value: T | undefined;
  let error: unknown;
  try {
    value = await phase();
  } catch (e) {
    error = e;
  }
  const flags = await call(`agree on ${what}`, () => pg.allGather(Float32Array.of(error === undefined ? 0 : 1)));
  if (error !== undefined) throw error;
  const failed = flags.map((f, r) => ((f[0] as number) > 0 ? r : -1)).filter((r) => r >= 0);
  if (failed.length) {
    // Let the failed rank exit first, so that a launcher names it as the cause.
    await new Promise((resolve) => setTimeout(resolve, 500));
    throw new CxformerError('CXF_DIST', `${what} failed on rank ${failed.join(', ')} (see that rank's output); stopping rank ${pg.rank} too`);
  }
  return value as T;
}

/**
 * A communication error of a 2-rank group names the peer (the only other rank) when the native message does not:
 * Gloo reports a lost connection by address (`Read error [127.0.0.1]:11423: Connection reset by peer`).
 */
export function namePeer(e: unknown, pg: ProcessGroup | null): unknown {
  if (!pg || pg.worldSize !== 2 || !(e instanceof CxformerError) || e.code !== 'CXF_DIST') return e;
  const other = 1 - pg.rank;
  if (new RegExp(`\\brank ${other}\\b`).test(e.message)) return e;
  const named = new CxformerError('CXF_DIST', `${e.message} (peer: rank ${other}, the only other rank)`, { cause: e.cause ?? e });
  named.stack = e.stack;
  return named;
}

export { rankDevice, resolveDistEnv, describeDistEnv, type DistEnv };
