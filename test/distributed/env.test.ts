/**
 * Rendezvous from the environment (src/distributed/env.ts): torchrun variables, Slurm variables (node lists, tasks per
 * node, derived port), their precedence, the GPU pick, and the errors for malformed or inconsistent values.
 * Expected values are written out by hand from the Slurm/torchrun documentation.
 */
import { describe, expect, it } from 'vitest';
import { describeDistEnv, expandNodelist, parseTasksPerNode, rankDevice, rankThreads, resolveDistEnv, slurmMasterPort } from '../../src/distributed/env.js';

describe('expandNodelist', () => {
  it('expands ranges and lists with zero padding, several names and groups', () => {
    expect(expandNodelist('node[01-03,07],gpu-a[1-2]')).toEqual(['node01', 'node02', 'node03', 'node07', 'gpu-a1', 'gpu-a2']);
    expect(expandNodelist('cn001')).toEqual(['cn001']);
    expect(expandNodelist('a,b,c')).toEqual(['a', 'b', 'c']);
    expect(expandNodelist('n[08-11]')).toEqual(['n08', 'n09', 'n10', 'n11']);
    expect(expandNodelist('n[9-11]')).toEqual(['n9', 'n10', 'n11']);
    expect(expandNodelist('r[1-2]n[1-2]')).toEqual(['r1n1', 'r1n2', 'r2n1', 'r2n2']);
    expect(expandNodelist('x[1-7:3]')).toEqual(['x1', 'x4', 'x7']);
    expect(expandNodelist('gpu[5],cpu[001-002]-ib')).toEqual(['gpu5', 'cpu001-ib', 'cpu002-ib']);
  });
  it('rejects malformed lists naming them', () => {
    expect(() => expandNodelist('node[1-3')).toThrow(/node list 'node\[1-3': unbalanced/);
    expect(() => expandNodelist('node[3-1]')).toThrow(/range '3-1' is empty or descending/);
    expect(() => expandNodelist('node[a-b]')).toThrow(/cannot read range 'a-b'/);
    expect(() => expandNodelist('a,,b')).toThrow(/empty host name/);
    expect(() => expandNodelist('')).toThrow(/empty Slurm node list/);
  });
});

describe('parseTasksPerNode', () => {
  it('reads the compressed form', () => {
    expect(parseTasksPerNode('4')).toEqual([4]);
    expect(parseTasksPerNode('4(x2)')).toEqual([4, 4]);
    expect(parseTasksPerNode('4(x2),3')).toEqual([4, 4, 3]);
    expect(parseTasksPerNode('2,1(x3)')).toEqual([2, 1, 1, 1]);
  });
  it('rejects anything else, naming the variable', () => {
    expect(() => parseTasksPerNode('4x2', 'SLURM_TASKS_PER_NODE')).toThrow(/SLURM_TASKS_PER_NODE='4x2'/);
    expect(() => parseTasksPerNode('0')).toThrow(/expected counts/);
  });
});

describe('resolveDistEnv', () => {
  it('a plain process is rank 0 of 1', () => {
    expect(resolveDistEnv({})).toMatchObject({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, nodeRank: 0, nnodes: 1, source: 'single' });
  });

  it('reads torchrun variables', () => {
    const d = resolveDistEnv({ RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'n0', MASTER_PORT: '1234' });
    expect(d).toEqual({ rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, nodeRank: 1, nnodes: 2, masterAddr: 'n0', masterPort: 1234, source: 'torchrun' });
    expect(resolveDistEnv({ RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', GROUP_RANK: '1', MASTER_ADDR: 'n0' }).masterPort).toBe(29500);
    // Without LOCAL_*: one node.
    expect(resolveDistEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1' })).toMatchObject({ localRank: 1, localWorldSize: 2, nodeRank: 0, nnodes: 1 });
    expect(describeDistEnv(d)).toBe('rank 5/8 (node 1/2, local 1/4, torchrun), master n0:1234');
  });

  it('torchrun variables take precedence over Slurm', () => {
    const slurm = { SLURM_JOB_ID: '4242', SLURM_PROCID: '3', SLURM_NTASKS: '4', SLURM_LOCALID: '1', SLURM_NODEID: '1', SLURM_TASKS_PER_NODE: '2(x2)', SLURM_JOB_NODELIST: 'gpu[1-2]' };
    expect(resolveDistEnv({ ...slurm, RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '7000' })).toMatchObject({
      rank: 0,
      worldSize: 2,
      masterAddr: 'h',
      masterPort: 7000,
      source: 'torchrun',
    });
    // RANK=0 WORLD_SIZE=1 runs one process inside an allocation.
    expect(resolveDistEnv({ ...slurm, RANK: '0', WORLD_SIZE: '1' })).toMatchObject({ worldSize: 1, source: 'torchrun' });
  });

  it('reads Slurm variables: rank, tasks per node, master host and port', () => {
    const d = resolveDistEnv({
      SLURM_JOB_ID: '123456',
      SLURM_PROCID: '6',
      SLURM_NTASKS: '11',
      SLURM_LOCALID: '2',
      SLURM_NODEID: '1',
      SLURM_TASKS_PER_NODE: '4(x2),3',
      SLURM_JOB_NODELIST: 'node[01-03]',
    });
    expect(d).toEqual({ rank: 6, worldSize: 11, localRank: 2, localWorldSize: 4, nodeRank: 1, nnodes: 3, masterAddr: 'node01', masterPort: 20000 + (123456 % 40000), source: 'slurm' });
    // Third node of "4(x2),3" has 3 tasks.
    expect(resolveDistEnv({ SLURM_PROCID: '10', SLURM_NTASKS: '11', SLURM_LOCALID: '2', SLURM_NODEID: '2', SLURM_TASKS_PER_NODE: '4(x2),3', SLURM_JOB_NODELIST: 'node[01-03]' }).localWorldSize).toBe(3);
    // --ntasks-per-node wins over the compressed list; MASTER_ADDR / MASTER_PORT win over the derived values.
    const e = resolveDistEnv({
      SLURM_JOB_ID: '9',
      SLURM_PROCID: '0',
      SLURM_NTASKS: '8',
      SLURM_LOCALID: '0',
      SLURM_NODEID: '0',
      SLURM_NTASKS_PER_NODE: '8',
      SLURM_TASKS_PER_NODE: '5,3',
      SLURM_JOB_NODELIST: 'gpu-a[7-8],gpu-b1',
      MASTER_ADDR: '10.1.2.3',
      MASTER_PORT: '31000',
    });
    expect(e).toMatchObject({ localWorldSize: 8, masterAddr: '10.1.2.3', masterPort: 31000, nnodes: 3 });
    expect(resolveDistEnv({ SLURM_JOB_ID: '9', SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_LOCALID: '0', SLURM_JOB_NODELIST: 'gpu-a[7-8],gpu-b1' }).masterAddr).toBe('gpu-a7');
    expect(slurmMasterPort('40001')).toBe(20001);
    expect(slurmMasterPort('1234567_3')).toBe(20000 + (1234567 % 40000));
  });

  it('reports malformed and inconsistent values naming the variable and value', () => {
    expect(() => resolveDistEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(/RANK=2 is out of range for WORLD_SIZE=2 \(expected 0\.\.1\)/);
    expect(() => resolveDistEnv({ RANK: 'one', WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(/RANK='one': expected an integer/);
    expect(() => resolveDistEnv({ RANK: '0', WORLD_SIZE: '0' })).toThrow(/WORLD_SIZE=0: expected an integer in 1\.\./);
    expect(() => resolveDistEnv({ RANK: '1.5', WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(/RANK='1.5'/);
    expect(() => resolveDistEnv({ RANK: '0', WORLD_SIZE: '2' })).toThrow(/MASTER_ADDR is not set, but WORLD_SIZE=2/);
    expect(() => resolveDistEnv({ WORLD_SIZE: '2' })).toThrow(/WORLD_SIZE is set but RANK is not/);
    expect(() => resolveDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '70000' })).toThrow(/MASTER_PORT=70000: expected an integer in 1\.\.65535/);
    expect(() => resolveDistEnv({ RANK: '0', WORLD_SIZE: '4', LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(/LOCAL_RANK=2 is out of range for LOCAL_WORLD_SIZE=2/);
    expect(() => resolveDistEnv({ RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'h' })).toThrow(/LOCAL_WORLD_SIZE=4 exceeds WORLD_SIZE=2/);
    expect(() => resolveDistEnv({ SLURM_PROCID: '4', SLURM_NTASKS: '4', SLURM_LOCALID: '0', SLURM_JOB_NODELIST: 'n1' })).toThrow(/SLURM_PROCID=4 is out of range for SLURM_NTASKS=4/);
    expect(() => resolveDistEnv({ SLURM_PROCID: '1', SLURM_NTASKS: '2', SLURM_JOB_NODELIST: 'n1' })).toThrow(/SLURM_LOCALID is not set/);
    expect(() => resolveDistEnv({ SLURM_PROCID: '1', SLURM_NTASKS: '2', SLURM_LOCALID: '1' })).toThrow(/neither MASTER_ADDR nor SLURM_JOB_NODELIST/);
    expect(() => resolveDistEnv({ SLURM_PROCID: '1', SLURM_NTASKS: '4', SLURM_LOCALID: '2', SLURM_TASKS_PER_NODE: '2(x2)', SLURM_JOB_NODELIST: 'n[1-2]' })).toThrow(
      /SLURM_LOCALID=2 is out of range for 2 task\(s\) on this node \(SLURM_TASKS_PER_NODE\)/,
    );
    expect(() => resolveDistEnv({ SLURM_PROCID: '1', SLURM_NTASKS: '4', SLURM_LOCALID: '0', SLURM_NODEID: '3', SLURM_TASKS_PER_NODE: '2(x2)', SLURM_JOB_NODELIST: 'n[1-2]' })).toThrow(
      /SLURM_NODEID=3 but SLURM_TASKS_PER_NODE='2\(x2\)' lists 2 node/,
    );
  });
});

describe('rankDevice', () => {
  const two = resolveDistEnv({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h' });
  it('LOCAL_RANK picks the GPU among the visible ones', () => {
    expect(rankDevice('cpu', two, {})).toBe('cpu');
    expect(rankDevice('cuda', two, {})).toBe('cuda:1');
    expect(rankDevice('cuda', two, { CUDA_VISIBLE_DEVICES: '4,5' })).toBe('cuda:1');
    // One GPU bound per task (srun --gpus-per-task=1): every rank sees its GPU as cuda:0.
    expect(rankDevice('cuda', two, { CUDA_VISIBLE_DEVICES: '5' })).toBe('cuda:0');
    expect(rankDevice('cuda:3', resolveDistEnv({}), {})).toBe('cuda:3');
  });
  it('refuses a rank without a GPU and one GPU for several local ranks', () => {
    expect(() => rankDevice('cuda', two, { CUDA_VISIBLE_DEVICES: '' })).toThrow(/LOCAL_RANK=1 has no GPU: CUDA_VISIBLE_DEVICES='' exposes 0 device/);
    expect(() => rankDevice('cuda:0', two, {})).toThrow(/compute.device=cuda:0 with 2 ranks on this node/);
  });
});

describe('rankThreads', () => {
  const four = resolveDistEnv({ RANK: '1', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'h' });
  it('splits the cores between the local ranks unless a count is configured', () => {
    expect(rankThreads(0, four, {}, 16)).toBe(4);
    expect(rankThreads(0, four, {}, 2)).toBe(1);
    expect(rankThreads(0, four, { CXFORMER_THREADS: '3' }, 16)).toBe(3);
    expect(rankThreads(6, four, { CXFORMER_THREADS: '3' }, 16)).toBe(6);
    // One rank on the node: 0 keeps meaning all cores.
    expect(rankThreads(0, resolveDistEnv({}), {}, 16)).toBe(0);
  });
});
