/**
 * Where this process sits in a data-parallel run, read from the environment the way torchrun and Slurm set it
 * (issue #6; docs/distributed.md). Pure TypeScript: importing or calling this never loads the native addon.
 *
 * Precedence:
 *   1. torchrun / `cxformer launch` variables: RANK and WORLD_SIZE (either one present selects this mode), plus
 *      LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK (node rank), MASTER_ADDR, MASTER_PORT.
 *      A missing LOCAL_RANK / LOCAL_WORLD_SIZE means one node (LOCAL_RANK = RANK, LOCAL_WORLD_SIZE = WORLD_SIZE);
 *      a missing MASTER_PORT means 29500 (torchrun's default). MASTER_ADDR is required when WORLD_SIZE > 1.
 *   2. Slurm (`srun`): SLURM_PROCID, SLURM_NTASKS (both present select this mode), SLURM_LOCALID, SLURM_NODEID,
 *      tasks per node from SLURM_NTASKS_PER_NODE or SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("4(x2),3"),
 *      the master host = the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST / SLURM_NODELIST (bracket
 *      ranges expanded, zero padding kept) unless MASTER_ADDR is set, and the port = MASTER_PORT if set, else
 *      20000 + (SLURM_JOB_ID mod 40000): the same on every node of a job, different between most jobs sharing a
 *      node (DINOv2 likewise derives a port in 20000–60000 from the job id).
 *   3. Otherwise a single process (rank 0 of 1).
 * Setting RANK=0 WORLD_SIZE=1 therefore runs one process even inside a Slurm allocation.
 */
import { availableParallelism } from 'node:os';
import { CxformerError } from '../native/load.js';

export type DistSource = 'torchrun' | 'slurm' | 'single';

export interface DistEnv {
  /** Global rank, 0 … worldSize − 1. */
  rank: number;
  worldSize: number;
  /** Rank on this node, 0 … localWorldSize − 1 (picks the GPU). */
  localRank: number;
  localWorldSize: number;
  /** Index of this node, 0 … nnodes − 1. */
  nodeRank: number;
  nnodes: number;
  /** Host of rank 0 (runs the rendezvous store) and its port. */
  masterAddr: string;
  masterPort: number;
  /** Which variables the values came from. */
  source: DistSource;
}

/** torchrun's default rendezvous port. */
export const DEFAULT_MASTER_PORT = 29500;

type Env = Readonly<Record<string, string | undefined>>;

function distError(message: string): CxformerError {
  return new CxformerError('CXF_DIST', message);
}

const present = (env: Env, name: string) => env[name] !== undefined && env[name] !== '';

/** An integer variable in [min, max]; throws naming the variable and its value. */
function intVar(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name] as string;
  const s = raw.trim();
  if (!/^[+]?\d+$/.test(s)) throw distError(`environment variable ${name}='${raw}': expected an integer >= ${min}`);
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw distError(`environment variable ${name}=${raw}: expected an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? '∞' : max}`);
  }
  return v;
}

const portVar = (env: Env, name: string) => intVar(env, name, 1, 65535);

/**
 * Expands a Slurm host list: `node[01-03,07],gpu-a[1-2]` → node01 node02 node03 node07 gpu-a1 gpu-a2.
 * Several bracket groups in one name expand as a product (`r[1-2]n[1-2]` → r1n1 r1n2 r2n1 r2n2). A range keeps
 * the zero padding of its lower bound (`[08-11]` → 08 09 10 11); `a-b:s` steps by s.
 * @throws CxformerError (CXF_DIST) on unbalanced brackets, an empty item or a descending range
 */
export function expandNodelist(list: string): string[] {
  const s = list.trim();
  if (!s) throw distError('empty Slurm node list');
  // Split on commas outside brackets.
  const items: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '[') depth++;
    else if (ch === ']') depth--;
    if (depth < 0 || depth > 1) throw distError(`Slurm node list '${list}': unbalanced or nested brackets`);
    if (ch === ',' && depth === 0) {
      items.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw distError(`Slurm node list '${list}': unbalanced brackets`);
  items.push(cur);
  const out: string[] = [];
  for (const item of items) {
    if (!item.trim()) throw distError(`Slurm node list '${list}': empty host name`);
    out.push(...expandHost(item.trim(), list));
  }
  return out;
}

function expandHost(item: string, list: string): string[] {
  const open = item.indexOf('[');
  if (open < 0) return [item];
  const close = item.indexOf(']', open);
  const prefix = item.slice(0, open);
  const body = item.slice(open + 1, close);
  const rest = expandHost(item.slice(close + 1), list);
  const values: string[] = [];
  for (const part of body.split(',')) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part.trim());
    if (!m) throw distError(`Slurm node list '${list}': cannot read range '${part}' in '[${body}]'`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (hi < lo || step < 1) throw distError(`Slurm node list '${list}': range '${part}' is empty or descending`);
    const width = (m[1] as string).length;
    for (let v = lo; v <= hi; v += step) values.push(String(v).padStart(width, '0'));
  }
  return values.flatMap((v) => rest.map((r) => `${prefix}${v}${r}`));
}

/**
 * Tasks per node from Slurm's compressed form: `4(x2),3` → [4, 4, 3].
 * @throws CxformerError (CXF_DIST) naming the text on anything else
 */
export function parseTasksPerNode(text: string, name = 'SLURM_TASKS_PER_NODE'): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!m || Number(m[1]) < 1 || (m[2] !== undefined && Number(m[2]) < 1)) {
      throw distError(`environment variable ${name}='${text}': expected counts like 4, 4(x2) or 4(x2),3`);
    }
    for (let i = 0; i < Number(m[2] ?? 1); i++) out.push(Number(m[1]));
  }
  return out;
}

/** The rendezvous port of a Slurm job without MASTER_PORT: 20000 + (job id mod 40000). */
export function slurmMasterPort(jobId: string): number {
  const m = /^(\d+)/.exec(jobId.trim());
  if (!m) throw distError(`environment variable SLURM_JOB_ID='${jobId}': expected a numeric job id (or set MASTER_PORT)`);
  return 20000 + (Number((m[1] as string).slice(-9)) % 40000);
}

function fromTorchrun(env: Env): DistEnv {
  for (const name of ['RANK', 'WORLD_SIZE']) {
    if (!present(env, name)) {
      const other = name === 'RANK' ? 'WORLD_SIZE' : 'RANK';
      throw distError(`environment variable ${other} is set but ${name} is not; a torchrun-style launch sets both (use 'cxformer launch' or torchrun)`);
    }
  }
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  const rank = intVar(env, 'RANK', 0);
  if (rank >= worldSize) throw distError(`environment variable RANK=${rank} is out of range for WORLD_SIZE=${worldSize} (expected 0..${worldSize - 1})`);
  const hasLocal = present(env, 'LOCAL_RANK');
  const hasLocalWorld = present(env, 'LOCAL_WORLD_SIZE');
  const localWorldSize = hasLocalWorld ? intVar(env, 'LOCAL_WORLD_SIZE', 1) : worldSize;
  if (localWorldSize > worldSize) throw distError(`environment variable LOCAL_WORLD_SIZE=${localWorldSize} exceeds WORLD_SIZE=${worldSize}`);
  if (hasLocalWorld && !hasLocal) throw distError(`environment variable LOCAL_WORLD_SIZE is set but LOCAL_RANK is not`);
  const localRank = hasLocal ? intVar(env, 'LOCAL_RANK', 0) : rank;
  if (localRank >= localWorldSize) {
    throw distError(`environment variable LOCAL_RANK=${localRank} is out of range for LOCAL_WORLD_SIZE=${localWorldSize} (expected 0..${localWorldSize - 1})`);
  }
  const nodeRank = present(env, 'GROUP_RANK') ? intVar(env, 'GROUP_RANK', 0) : Math.floor(rank / localWorldSize);
  const nnodes = Math.ceil(worldSize / localWorldSize);
  let masterAddr = '127.0.0.1';
  if (present(env, 'MASTER_ADDR')) masterAddr = (env.MASTER_ADDR as string).trim();
  else if (worldSize > 1) throw distError(`environment variable MASTER_ADDR is not set, but WORLD_SIZE=${worldSize}: set it to the host of rank 0 (or use 'cxformer launch')`);
  const masterPort = present(env, 'MASTER_PORT') ? portVar(env, 'MASTER_PORT') : DEFAULT_MASTER_PORT;
  return { rank, worldSize, localRank, localWorldSize, nodeRank, nnodes: Math.max(nnodes, nodeRank + 1), masterAddr, masterPort, source: 'torchrun' };
}

function fromSlurm(env: Env): DistEnv {
  const worldSize = intVar(env, 'SLURM_NTASKS', 1);
  const rank = intVar(env, 'SLURM_PROCID', 0);
  if (rank >= worldSize) throw distError(`environment variable SLURM_PROCID=${rank} is out of range for SLURM_NTASKS=${worldSize}`);
  const nodeRank = present(env, 'SLURM_NODEID') ? intVar(env, 'SLURM_NODEID', 0) : 0;
  const localRank = present(env, 'SLURM_LOCALID') ? intVar(env, 'SLURM_LOCALID', 0) : worldSize === 1 ? 0 : -1;
  if (localRank < 0) throw distError(`environment variable SLURM_LOCALID is not set (SLURM_NTASKS=${worldSize}); launch the ranks with srun`);
  let perNode: number[] | null = null;
  let perNodeName = '';
  for (const name of ['SLURM_NTASKS_PER_NODE', 'SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE']) {
    if (present(env, name)) {
      perNode = parseTasksPerNode(env[name] as string, name);
      perNodeName = name;
      break;
    }
  }
  let localWorldSize: number;
  if (perNode === null) localWorldSize = worldSize;
  else if (perNode.length === 1) localWorldSize = perNode[0] as number;
  else {
    if (nodeRank >= perNode.length) throw distError(`SLURM_NODEID=${nodeRank} but ${perNodeName}='${env[perNodeName]}' lists ${perNode.length} node(s)`);
    localWorldSize = perNode[nodeRank] as number;
  }
  if (localRank >= localWorldSize) {
    throw distError(`environment variable SLURM_LOCALID=${localRank} is out of range for ${localWorldSize} task(s) on this node (${perNodeName || 'SLURM_NTASKS'})`);
  }
  const nodelistName = ['SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST'].find((n) => present(env, n));
  const hosts = nodelistName ? expandNodelist(env[nodelistName] as string) : [];
  let nnodes = hosts.length || (perNode?.length ?? 1);
  if (present(env, 'SLURM_JOB_NUM_NODES') && !nodelistName) nnodes = intVar(env, 'SLURM_JOB_NUM_NODES', 1);
  let masterAddr: string;
  if (present(env, 'MASTER_ADDR')) masterAddr = (env.MASTER_ADDR as string).trim();
  else if (hosts.length) masterAddr = hosts[0] as string;
  else if (worldSize === 1) masterAddr = '127.0.0.1';
  else throw distError(`neither MASTER_ADDR nor SLURM_JOB_NODELIST is set (SLURM_NTASKS=${worldSize}): cannot find the host of rank 0`);
  let masterPort: number;
  if (present(env, 'MASTER_PORT')) masterPort = portVar(env, 'MASTER_PORT');
  else if (present(env, 'SLURM_JOB_ID')) masterPort = slurmMasterPort(env.SLURM_JOB_ID as string);
  else masterPort = DEFAULT_MASTER_PORT;
  return { rank, worldSize, localRank, localWorldSize, nodeRank, nnodes: Math.max(nnodes, nodeRank + 1), masterAddr, masterPort, source: 'slurm' };
}

/**
 * The rank, world and rendezvous of this process (see the module comment for the variables and precedence).
 * @throws CxformerError (CXF_DIST) naming the variable and its value when one is malformed or inconsistent
 */
export function resolveDistEnv(env: Env = process.env): DistEnv {
  if (present(env, 'RANK') || present(env, 'WORLD_SIZE')) return fromTorchrun(env);
  if (present(env, 'SLURM_PROCID') && present(env, 'SLURM_NTASKS')) return fromSlurm(env);
  return { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, nodeRank: 0, nnodes: 1, masterAddr: '127.0.0.1', masterPort: DEFAULT_MASTER_PORT, source: 'single' };
}

/**
 * The device of this rank. `cpu` stays `cpu`. With `cuda` and several ranks on the node, rank `LOCAL_RANK` takes
 * the GPU `cuda:<LOCAL_RANK>` among those CUDA_VISIBLE_DEVICES exposes; when CUDA_VISIBLE_DEVICES exposes exactly
 * one GPU (Slurm `--gpus-per-task=1` binds one per task) every rank takes `cuda:0`. An explicit `cuda:N` is kept
 * for a single local rank and refused for several (they would share one GPU).
 * @throws CxformerError (CXF_DIST) when LOCAL_RANK has no visible GPU or `cuda:N` is given to several local ranks
 */
export function rankDevice(configured: string, d: DistEnv, env: Env = process.env): string {
  if (!configured.startsWith('cuda')) return configured;
  if (d.localWorldSize === 1 && d.worldSize === 1) return configured;
  const explicit = /^cuda:(\d+)$/.exec(configured);
  if (explicit && d.localWorldSize > 1) {
    throw distError(
      `compute.device=${configured} with ${d.localWorldSize} ranks on this node would put them all on one GPU; set compute.device=cuda so that LOCAL_RANK picks the GPU`,
    );
  }
  if (explicit) return configured;
  const cvd = env.CUDA_VISIBLE_DEVICES;
  const visible = cvd === undefined ? null : cvd.split(',').map((x) => x.trim()).filter((x) => x !== '').length;
  if (visible === 1) return 'cuda:0';
  if (visible !== null && d.localRank >= visible) {
    throw distError(
      `LOCAL_RANK=${d.localRank} has no GPU: CUDA_VISIBLE_DEVICES='${cvd}' exposes ${visible} device(s) for ${d.localWorldSize} local rank(s); start at most one rank per visible GPU`,
    );
  }
  return `cuda:${d.localRank}`;
}

/**
 * LibTorch threads of this rank. A configured count > 0 is kept; 0 ("all cores") becomes, when several ranks share
 * the node, CXFORMER_THREADS if set (`cxformer launch` sets cores / ranks) or else cores / local ranks (at least 1),
 * so that the ranks do not oversubscribe the CPU.
 */
export function rankThreads(configured: number, d: DistEnv, env: Env = process.env, cores = availableParallelism()): number {
  if (configured > 0 || d.localWorldSize === 1) return configured;
  const fromEnv = env.CXFORMER_THREADS;
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv.trim()) && Number(fromEnv) > 0) return Number(fromEnv);
  return Math.max(1, Math.floor(cores / d.localWorldSize));
}

/** One line describing the rank, for logs: `rank 1/4 (node 0, local 1/4, torchrun), master 10.0.0.1:29500`. */
export function describeDistEnv(d: DistEnv): string {
  return `rank ${d.rank}/${d.worldSize} (node ${d.nodeRank}/${d.nnodes}, local ${d.localRank}/${d.localWorldSize}, ${d.source}), master ${d.masterAddr}:${d.masterPort}`;
}
