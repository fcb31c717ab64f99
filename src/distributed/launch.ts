/**
 * A local launcher like torchrun's (issue #6): starts the ranks of this node as child processes with the torchrun
 * variables set, prefixes each line of their output with `[rank k]`, forwards SIGINT/SIGTERM, and when one rank
 * fails (non-zero exit or killed by a signal) stops the others (SIGTERM, then SIGKILL after a grace period) and
 * reports which rank failed and how. Pure TypeScript: never loads the native addon.
 *
 * Ranks run in their own process groups, so a Ctrl-C in the terminal reaches them once (forwarded by the
 * launcher), not twice; stopping a rank signals its whole group (a rank that is a shell script with children).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import { CxformerError } from '../native/load.js';

export interface LaunchOptions {
  /** Ranks on this node. */
  nprocPerNode: number;
  /** Nodes taking part. @default 1 */
  nnodes?: number;
  /** This node's index, 0 … nnodes − 1. @default 0 */
  nodeRank?: number;
  /** Host of global rank 0. @default 127.0.0.1 (single node only; required with nnodes > 1) */
  masterAddr?: string;
  /** Rendezvous port. @default a free port of 127.0.0.1 (single node only; required with nnodes > 1) */
  masterPort?: number;
  /** Program and arguments every rank runs. */
  command: string;
  args: string[];
  /** Base environment of the ranks. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Milliseconds between SIGTERM and SIGKILL when stopping the ranks. @default 10000 */
  graceMs?: number;
  /** Prefix each output line with `[rank k]`. @default true */
  prefix?: boolean;
  stdout?: Writable;
  stderr?: Writable;
  /** Launcher messages (failures, stops). @default written to `stderr` */
  log?: (msg: string) => void;
  /** Forward SIGINT/SIGTERM received by this process to the ranks. @default true */
  forwardSignals?: boolean;
  /** Called once every rank has started (tests: the children's pids). */
  onStart?: (ranks: Array<{ rank: number; pid: number | undefined }>, rendezvous: { masterAddr: string; masterPort: number; worldSize: number }) => void;
}

export interface RankExit {
  rank: number;
  localRank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Stopped by the launcher after another rank failed (or on a forwarded signal). */
  stopped: boolean;
}

export interface LaunchResult {
  /** 0 when every rank exited 0; else the failed rank's exit code, or 128 + its signal number. */
  code: number;
  /** The first rank that failed, if any. */
  failed: RankExit | null;
  exits: RankExit[];
  masterAddr: string;
  masterPort: number;
}

function launchError(msg: string): CxformerError {
  return new CxformerError('CXF_ARG', msg);
}

/** A TCP port that was free on `host` a moment ago (bound to port 0, then released). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** `exited with code 3` / `was killed by SIGKILL`. */
export function describeExit(e: Pick<RankExit, 'code' | 'signal'>): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

const signalNumber = (s: NodeJS.Signals) => (constants.signals as Record<string, number>)[s] ?? 0;

/**
 * The progress line a rank rewrites in place on the launcher's terminal (its text with the prefix, '' when none),
 * shared by the ranks' prefixers: other output is written above it, and it is drawn again below.
 */
interface LiveLine {
  text: string;
  owner: object | undefined;
}

/** The text a terminal shows for a line holding `\r` rewrites: what follows the last `\r`, without its erase code. */
const lastRewrite = (l: string) => l.slice(l.lastIndexOf('\r') + 1).replace(/^\x1b\[2K/, '');

/**
 * Passes complete lines to `out`, each prefixed; keeps a partial last line until more arrives or `end()`.
 * With `live` (the launcher's stderr is a terminal): a partial line holding `\r` is a progress line (src/cli/commands/
 * common.ts `progress`), shown prefixed and rewritten in place; complete lines show their last rewrite.
 */
function linePrefixer(out: Writable, prefix: string, live?: LiveLine) {
  let buf = '';
  const me = {};
  const emit = (lines: string[], end: boolean) => {
    if (!live) {
      if (lines.length) out.write(lines.map((l) => `${prefix}${l}\n`).join(''));
      return;
    }
    let s = live.text ? '\r\x1b[2K' : '';
    s += lines.map((l) => `${prefix}${lastRewrite(l)}\n`).join('');
    const at = end ? -1 : buf.lastIndexOf('\r');
    if (at >= 0) {
      buf = buf.slice(at); // the latest rewrite; its continuation appends to it
      live.text = `${prefix}${lastRewrite(buf)}`;
      live.owner = me;
    } else if ((lines.length || end) && live.owner === me) {
      live.text = '';
      live.owner = undefined;
    }
    s += live.text;
    if (s) out.write(s);
  };
  return {
    write(chunk: Buffer | string) {
      buf += chunk.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      emit(lines, false);
    },
    end() {
      const rest = buf;
      buf = '';
      emit(rest ? [rest] : [], true);
    },
  };
}

/** Sends `sig` to the rank's process group (falls back to the process). */
function signalRank(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      /* already gone */
    }
  }
}

/** Validates the layout and fills the rendezvous defaults. */
export async function launchLayout(o: Pick<LaunchOptions, 'nprocPerNode' | 'nnodes' | 'nodeRank' | 'masterAddr' | 'masterPort'>) {
  const nproc = o.nprocPerNode;
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  if (!(Number.isInteger(nproc) && nproc >= 1)) throw launchError(`--nproc-per-node: expected an integer >= 1, got ${nproc}`);
  if (!(Number.isInteger(nnodes) && nnodes >= 1)) throw launchError(`--nnodes: expected an integer >= 1, got ${nnodes}`);
  if (!(Number.isInteger(nodeRank) && nodeRank >= 0 && nodeRank < nnodes)) throw launchError(`--node-rank: expected an integer in 0..${nnodes - 1}, got ${nodeRank}`);
  if (o.masterPort !== undefined && !(Number.isInteger(o.masterPort) && o.masterPort >= 1 && o.masterPort <= 65535)) {
    throw launchError(`--master-port: expected a port 1..65535, got ${o.masterPort}`);
  }
  if (nnodes > 1 && (o.masterAddr === undefined || o.masterPort === undefined)) {
    throw launchError(`--nnodes ${nnodes}: give --master-addr <host of node 0> and --master-port <port>, the same on every node`);
  }
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await freePort(masterAddr));
  return { nproc, nnodes, nodeRank, masterAddr, masterPort, worldSize: nproc * nnodes };
}

/**
 * Runs `command args` as `nprocPerNode` ranks of this node and waits for all of them.
 * Rank environment: RANK = nodeRank·nprocPerNode + LOCAL_RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * GROUP_RANK (= node rank), NODE_RANK, MASTER_ADDR, MASTER_PORT, and CXFORMER_THREADS = cores / ranks (at least 1)
 * unless set, so that the ranks do not oversubscribe the CPU.
 */
export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const L = await launchLayout(o);
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  // On a terminal, local rank 0 draws its progress line (CXFORMER_PROGRESS_TTY); the others print plain lines.
  const live: LiveLine | undefined = (stderr as { isTTY?: boolean }).isTTY ? { text: '', owner: undefined } : undefined;
  const log = o.log ?? ((m: string) => stderr.write(live?.text ? `\r\x1b[2Klaunch: ${m}\n${live.text}` : `launch: ${m}\n`));
  const graceMs = o.graceMs ?? 10_000;
  const prefix = o.prefix ?? true;
  const baseEnv = o.env ?? process.env;
  const threads = baseEnv.CXFORMER_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / L.nproc)));

  const children: ChildProcess[] = [];
  const exits: RankExit[] = [];
  let failed: RankExit | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;

  const stopAll = (sig: NodeJS.Signals) => {
    for (const c of children) signalRank(c, sig);
    if (!killTimer) {
      killTimer = setTimeout(() => {
        const left = children.filter((c) => c.exitCode === null && c.signalCode === null);
        if (left.length) log(`${left.length} rank(s) still running ${graceMs / 1000} s after ${sig}: sending SIGKILL`);
        for (const c of left) signalRank(c, 'SIGKILL');
      }, graceMs);
      killTimer.unref();
    }
  };

  let signalCount = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signalCount++;
    stopping = true;
    if (signalCount === 1) {
      log(`${sig} received: forwarding to the ranks (again to kill them)`);
      for (const c of children) signalRank(c, sig);
    } else {
      for (const c of children) signalRank(c, 'SIGKILL');
    }
  };
  const forward = o.forwardSignals ?? true;
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  // Best effort: a launcher that exits (error, normal end) takes its ranks with it.
  const onExit = () => {
    for (const c of children) signalRank(c, 'SIGKILL');
  };
  if (forward) {
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  }
  process.on('exit', onExit);

  try {
    const done = Array.from({ length: L.nproc }, (_, local) => {
      const rank = L.nodeRank * L.nproc + local;
      const env: NodeJS.ProcessEnv = {
        ...baseEnv,
        RANK: String(rank),
        WORLD_SIZE: String(L.worldSize),
        LOCAL_RANK: String(local),
        LOCAL_WORLD_SIZE: String(L.nproc),
        GROUP_RANK: String(L.nodeRank),
        NODE_RANK: String(L.nodeRank),
        MASTER_ADDR: L.masterAddr,
        MASTER_PORT: String(L.masterPort),
        CXFORMER_THREADS: threads,
        CXFORMER_LAUNCHER_PID: String(process.pid),
        ...(live && local === 0 && baseEnv.CXFORMER_PROGRESS_TTY === undefined ? { CXFORMER_PROGRESS_TTY: '1' } : {}),
      };
      const child = spawn(o.command, o.args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      children.push(child);
      const tag = prefix ? `[rank ${rank}] ` : '';
      const out = linePrefixer(stdout, tag);
      const err = linePrefixer(stderr, tag, live);
      child.stdout?.on('data', (d: Buffer) => out.write(d));
      child.stderr?.on('data', (d: Buffer) => err.write(d));
      return new Promise<RankExit>((resolve) => {
        let spawnError: Error | undefined;
        child.on('error', (e) => {
          spawnError = e;
        });
        child.on('close', (code, signal) => {
          out.end();
          err.end();
          const wasStopping = stopping;
          const e: RankExit = { rank, localRank: local, code: spawnError ? 127 : code, signal, stopped: wasStopping };
          exits.push(e);
          if (spawnError) log(`rank ${rank}: cannot start '${o.command}': ${spawnError.message}`);
          const bad = e.code !== 0 || e.signal !== null;
          if (bad && !failed && !wasStopping) {
            failed = e;
            stopping = true;
            const others = children.filter((c) => c !== child && c.exitCode === null && c.signalCode === null).length;
            log(`rank ${rank} (local rank ${local}) ${describeExit(e)}${others ? `; stopping the other ${others} rank(s)` : ''}`);
            stopAll('SIGTERM');
          } else if (bad && !failed && wasStopping && !e.signal) {
            // A rank that ended with an error after a forwarded signal still decides the exit code.
            failed = e;
          }
          resolve(e);
        });
      });
    });
    o.onStart?.(
      children.map((c, i) => ({ rank: L.nodeRank * L.nproc + i, pid: c.pid })),
      { masterAddr: L.masterAddr, masterPort: L.masterPort, worldSize: L.worldSize },
    );
    await Promise.all(done);
  } finally {
    if (killTimer) clearTimeout(killTimer);
    if (forward) {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
    }
    process.removeListener('exit', onExit);
  }
  exits.sort((a, b) => a.rank - b.rank);
  const f = failed as RankExit | null;
  let code = 0;
  if (f) code = f.signal ? 128 + signalNumber(f.signal) : (f.code ?? 1);
  else {
    const signalled = exits.find((e) => e.signal !== null || e.code !== 0);
    if (signalled) code = signalled.signal ? 128 + signalNumber(signalled.signal) : (signalled.code ?? 1);
  }
  return { code, failed: f, exits, masterAddr: L.masterAddr, masterPort: L.masterPort };
}

/**
 * In a rank started by {@link launch} (CXFORMER_LAUNCHER_PID set): exits when the launcher is gone (killed with
 * SIGKILL, so it could not stop its ranks), checked every second. The cxformer CLI calls it at start.
 */
export function exitWithLauncher(env: NodeJS.ProcessEnv = process.env): void {
  const pid = Number(env.CXFORMER_LAUNCHER_PID);
  if (!Number.isInteger(pid) || pid <= 1 || process.ppid !== pid) return;
  const timer = setInterval(() => {
    if (process.ppid !== pid) {
      process.stderr.write(`rank ${env.RANK ?? '?'}: the launcher (pid ${pid}) is gone; stopping\n`);
      process.exit(1);
    }
  }, 1000);
  timer.unref();
}
