/** `cxformer synth`: the built-in labelled phantom dataset (images, labels.csv, masks.csv, reports.csv, dataset.json). */
import { synthDataset } from '../../data/synth.js';
import { CxformerError } from '../../native/load.js';
import { progress } from './common.js';

function intArg(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!(Number.isSafeInteger(x) && x >= min && x <= max)) {
    throw new CxformerError('CXF_ARG', `synth: --${name} must be an integer${max < Number.MAX_SAFE_INTEGER ? ` in ${min}..${max}` : ` >= ${min}`}, got ${String(v)}`);
  }
  return x;
}

/** cxformer synth --out DIR --n N --seed S [--size 512] [-q] */
export async function run(a: Record<string, unknown>): Promise<number> {
  if (typeof a.out !== 'string' || a.out.trim() === '') throw new CxformerError('CXF_ARG', 'synth: --out DIR is required\nExample usage: cxformer synth --out data/synth --n 200 --seed 0');
  const out = a.out;
  const n = intArg('n', a.n, 1);
  const seed = a.seed === undefined ? 0 : intArg('seed', a.seed, Number.MIN_SAFE_INTEGER);
  const size = a.size === undefined ? 512 : intArg('size', a.size, 32, 4096);
  const quiet = Boolean(a.quiet);
  const bar = progress(quiet);
  const t0 = performance.now();
  bar.update('synth: images', 0, n);
  const res = await synthDataset({ out, n, seed, size, onProgress: (done, total) => bar.update('synth: images', done, total) });
  const obs = res.info.observed;
  const sp = res.info.splits.images;
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  bar.done(
    `synth: wrote ${n} images (${size}x${size}, seed ${seed}, ${res.info.patients} patients; ` +
      `cardiomegaly ${obs.Cardiomegaly}, effusion ${obs['Pleural Effusion']}, nodule ${obs.Nodule}, pneumothorax ${obs.Pneumothorax}, no finding ${obs['No Finding']}; ` +
      `train/valid/test ${sp.train}/${sp.valid}/${sp.test}) to ${res.out} in ${s} s`,
  );
  return 0;
}
