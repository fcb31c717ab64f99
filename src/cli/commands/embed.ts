/** `cxformer embed`: features of images and/or pre-normalised pixel tensors, written as one safetensors file. */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { EmbedResult, Tensor } from '../../backbone.js';
import { resolvePreprocessOptions } from '../../image/options.js';
import { preprocessBatch } from '../../image/preprocess.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../../io/safetensors.js';
import { resolveModel } from '../../model/weights.js';
import { CxformerError } from '../../native/load.js';
import { type Args, loadBackboneFromArgs, onInterrupt, preprocessOverrides, progress, splitPositionals } from './common.js';

const IMAGE_EXT = /\.(png|jpe?g|dcm|dicom)$/i;

/** One unit of work: a batch of images, or a slice of a pixel_values tensor file. */
type Batch = { kind: 'images'; names: string[]; paths: string[] } | { kind: 'tensor'; names: string[]; file: string; start: number; count: number };

async function planBatches(inputs: string[], batchSize: number, inChans: number): Promise<Batch[]> {
  const batches: Batch[] = [];
  let images: string[] = [];
  const flush = () => {
    for (let i = 0; i < images.length; i += batchSize) {
      const paths = images.slice(i, i + batchSize);
      batches.push({ kind: 'images', names: paths, paths });
    }
    images = [];
  };
  for (const input of inputs) {
    if (!existsSync(input) || !statSync(input).isFile()) throw new CxformerError('CXF_INPUT', `${input}: no such file`);
    if (input.endsWith('.safetensors')) {
      flush();
      const h = await readSafetensorsHeader(input);
      const t = h.tensors.get('pixel_values');
      if (!t) throw new CxformerError('CXF_INPUT', `${input}: expected a tensor named "pixel_values", found ${[...h.tensors.keys()].join(', ') || 'none'}`);
      if (t.dtype !== 'F32' || t.shape.length !== 4 || t.shape[1] !== inChans) {
        throw new CxformerError('CXF_INPUT', `${input}: expected "pixel_values" as F32 [B, ${inChans}, H, W], found ${t.dtype} [${t.shape.join(', ')}]`);
      }
      const b = t.shape[0] ?? 0;
      for (let s = 0; s < b; s += batchSize) {
        const count = Math.min(batchSize, b - s);
        batches.push({ kind: 'tensor', file: input, start: s, count, names: Array.from({ length: count }, (_, k) => `${input}#${s + k}`) });
      }
    } else if (IMAGE_EXT.test(input)) {
      images.push(input);
    } else {
      throw new CxformerError('CXF_INPUT', `${input}: expected an image (.png, .jpg, .jpeg, .dcm, .dicom) or a .safetensors file with "pixel_values"`);
    }
  }
  flush();
  return batches;
}

/** Concatenates per-batch tensors along dim 0, checking that the other dims agree. */
function concat(parts: Tensor[], what: string, names: string[][]): Tensor {
  const first = parts[0] as Tensor;
  const rest = first.shape.slice(1);
  let rows = 0;
  parts.forEach((p, i) => {
    if (p.shape.slice(1).join() !== rest.join()) {
      throw new CxformerError(
        'CXF_INPUT',
        `${what}: inputs give different shapes, [${rest}] for ${names[0]?.[0]} and [${p.shape.slice(1)}] for ${names[i]?.[0]}; use the same image size (--crop) for all inputs`,
      );
    }
    rows += p.shape[0] ?? 0;
  });
  const data = new Float32Array(rows * rest.reduce((a, b) => a * b, 1));
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { shape: [rows, ...rest], data };
}

export async function run(a: Args): Promise<number> {
  const { inputs, overrides } = splitPositionals(a.inputs);
  const out = path.resolve(String(a.out));
  if (!out.endsWith('.safetensors')) throw new CxformerError('CXF_ARG', `--out ${a.out}: expected a .safetensors file name`);
  const layers = a.layers === undefined ? [] : String(a.layers).split(',').map((s) => Number(s.trim()));
  const quiet = Boolean(a.quiet);
  const batchSize = Number(a['batch-size']);
  const pre = preprocessOverrides(a);

  // Everything that can be checked without LibTorch is checked first: weights, architecture, inputs.
  const resolved = await resolveModel({ weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides });
  const batches = await planBatches(inputs, batchSize, resolved.config.in_chans);
  const model = await loadBackboneFromArgs(a, resolved);
  const preprocess = resolvePreprocessOptions({ ...model.preprocess, ...pre });
  const log = progress(quiet);
  if (!model.resolved.weights) log.done(`warning: no --weights: using a random-initialised ${a.arch} (seed ${a.seed})`);
  else log.done(`embed: position embeddings at other sizes: ${model.resolved.interpolation}`);

  let interrupted = false;
  const interrupt = onInterrupt(() => {
    interrupted = true;
    log.done('interrupt: stopping after the current batch (Ctrl-C again to quit at once)');
  });

  const tensorCache = new Map<string, Awaited<ReturnType<typeof readSafetensors>>>();
  const load = async (b: Batch): Promise<{ data: Float32Array; shape: number[] }> => {
    if (b.kind === 'images') return preprocessBatch(b.paths, preprocess);
    let file = tensorCache.get(b.file);
    if (!file) {
      file = await readSafetensors(b.file);
      tensorCache.clear();
      tensorCache.set(b.file, file);
    }
    const t = file.tensors.get('pixel_values');
    const [, c, h, w] = t?.shape as number[];
    const per = (c ?? 0) * (h ?? 0) * (w ?? 0);
    return { data: (t?.data as Float32Array).slice(b.start * per, (b.start + b.count) * per), shape: [b.count, c ?? 0, h ?? 0, w ?? 0] };
  };

  const results: EmbedResult[] = [];
  const names: string[][] = [];
  const total = batches.reduce((n, b) => n + b.names.length, 0);
  let done = 0;
  const t0 = performance.now();
  log.update('embed:', 0, total);
  try {
    // Decode/preprocess batch k+1 (sharp, libuv pool) while the core runs batch k.
    let next = batches.length ? load(batches[0] as Batch) : undefined;
    for (let k = 0; k < batches.length && !interrupted; k++) {
      const input = await (next as Promise<{ data: Float32Array; shape: number[] }>);
      next = k + 1 < batches.length ? load(batches[k + 1] as Batch) : undefined;
      next?.catch(() => undefined); // surfaced when awaited
      results.push(
        await model.embed(input.data, input.shape, { layers, normLayers: Boolean(a['norm-layers']), precision: a.precision as 'f32' | 'bf16', signal: interrupt.signal }),
      );
      names.push((batches[k] as Batch).names);
      done += (batches[k] as Batch).names.length;
      log.update('embed:', done, total);
    }
  } catch (e) {
    if (interrupted) return 130;
    throw e;
  } finally {
    interrupt.dispose();
  }
  if (interrupted) {
    log.done(`interrupted after ${done}/${total} inputs; nothing written to ${out}`);
    return 130;
  }

  const pick = (f: (r: EmbedResult) => Tensor, what: string) => concat(results.map(f), what, names);
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  const put = (name: string, t: Tensor) => (tensors[name] = { dtype: 'F32', shape: t.shape, data: t.data });
  put('cls', pick((r) => r.cls, 'cls'));
  put('registers', pick((r) => r.registers, 'registers'));
  put('patches', pick((r) => r.patches, 'patches'));
  put('last_hidden_state', pick((r) => r.lastHiddenState, 'last_hidden_state'));
  for (const l of layers) put(`layer_${l}`, pick((r) => r.layers.get(l) as Tensor, `layer ${l}`));
  const first = results[0] as EmbedResult;
  await writeSafetensors(out, tensors, {
    format: 'pt',
    inputs: JSON.stringify(names.flat()),
    grid: JSON.stringify(first.grid),
    cxformer_config: JSON.stringify(model.config),
    weights: model.resolved.weights?.file ?? `random:${a.arch}:seed=${a.seed}`,
    preprocess: JSON.stringify(preprocess),
    precision: String(a.precision),
    layers: JSON.stringify(layers),
    norm_layers: String(Boolean(a['norm-layers'])),
  });
  const s = (performance.now() - t0) / 1000;
  log.done(`embed: ${total} inputs in ${s.toFixed(2)} s (${(total / s).toFixed(2)} img/s) -> ${out}`);
  return 0;
}
