// One rank of the process-group checks (test/distributed/train-dist.test.ts): joins the group from the environment, runs
// each collective once and writes what it got to <out>/pg-<rank>.json. argv: <out dir> <repo root> [timeout s]
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [out, root, timeout] = process.argv.slice(2);
const { joinProcessGroup, resolveDistEnv } = await import(pathToFileURL(path.join(root, 'dist', 'distributed', 'group.js')).href);
const env = resolveDistEnv();
const pg = await joinProcessGroup({ env, timeoutS: Number(timeout ?? 30), device: 'cpu' });
const r = env.rank;
const sum = await pg.allReduce(Float32Array.of(r + 1, 10 * (r + 1)), 'sum');
const avg = await pg.allReduce(Float32Array.of(r + 1), 'avg');
const bc = await pg.broadcast(Float32Array.of(r === 0 ? 42 : -1, r === 0 ? 7 : -1), 0);
const gathered = await pg.allGather(Float32Array.of(r, r * r));
await pg.barrier();
await writeFile(
  path.join(out, `pg-${r}.json`),
  JSON.stringify({ rank: pg.rank, worldSize: pg.worldSize, backend: pg.backend(), sum: [...sum], avg: [...avg], bc: [...bc], gathered: gathered.map((g) => [...g]) }),
);
pg.destroy();
