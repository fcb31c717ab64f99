/**
 * Data-path benchmark (part of `npm run bench`): `cxformer prepare` throughput on generated 2048×2048 16-bit
 * PNGs, and the throughput at which training receives images (decode → gray → resize to 518 → equalise) from
 * a prepared 8-bit cache versus decoding 2048×2048 JPEGs on the fly; and prepare on 12-bit DICOMs. Writes bench-results/data.json.
 * Env: BENCH_IMAGES (default 16).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { prepareCache } from '../cache/prepare.js';
import { openCache } from '../cache/reader.js';
import { imagePixel, TS, writeDicom } from '../image/dicom/writer.js';
import { loadCachedImage, loadTrainImage } from '../cache/planes.js';

async function main() {
  const n = Number(process.env.BENCH_IMAGES ?? 16);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'cxf-bench-data-'));
  const S = 2048;
  const png: string[] = [];
  const jpg: string[] = [];
  for (let k = 0; k < n; k++) {
    const px = new Uint16Array(S * S);
    let s = k * 7919 + 1;
    for (let i = 0; i < px.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      px[i] = Math.min(65535, ((i % S) * 16 + Math.floor(i / S) * 8 + (s >>> 20)) & 0xffff);
    }
    const p16 = path.join(tmp, `img${k}.png`);
    await sharp(Buffer.from(px.buffer), { raw: { width: S, height: S, channels: 1, premultiplied: false } })
      .toColourspace('grey16')
      .png({ compressionLevel: 1 })
      .toFile(p16);
    png.push(p16);
    const p8 = path.join(tmp, `img${k}.jpg`);
    await sharp(p16).toColourspace('b-w').jpeg({ quality: 95 }).toFile(p8);
    jpg.push(p8);
  }
  // The same images as 12-bit DICOMs (explicit VR little endian, window centre/width).
  const dcm: string[] = [];
  for (let k = 0; k < n; k++) {
    const px = new Uint16Array(S * S);
    let s = k * 7919 + 1;
    for (let i = 0; i < px.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      px[i] = ((i % S) + Math.floor(i / S) + (s >>> 24)) & 0x0fff;
    }
    const file = path.join(tmp, `img${k}.dcm`);
    await writeDicom(file, {
      transferSyntax: TS.explicitLE,
      elements: [
        ...imagePixel({ rows: S, columns: S, bitsAllocated: 16, bitsStored: 12 }),
        { tag: 0x00281050, vr: 'DS', value: '2048' },
        { tag: 0x00281051, vr: 'DS', value: '4096' },
        { tag: 0x7fe00010, vr: 'OW', value: Array.from(px) },
      ],
    });
    dcm.push(file);
  }
  const items = png.map((p, i) => ({ id: `img${i}`, path: p }));
  const runs: Record<string, number> = {};
  for (const [label, shorterSide, bitDepth] of [
    ['518_8bit', 518, 8],
    ['518_16bit', 518, 16],
    ['1024_16bit', 1024, 16],
  ] as const) {
    const t = performance.now();
    await prepareCache({ out: path.join(tmp, `cache-${label}`), items, shorterSide, bitDepth, workers: os.availableParallelism() });
    runs[label] = n / ((performance.now() - t) / 1000);
  }
  {
    const t = performance.now();
    await prepareCache({ out: path.join(tmp, 'cache-dicom'), items: dcm.map((p, i) => ({ id: `dcm${i}`, path: p })), shorterSide: 518, bitDepth: 16, workers: os.availableParallelism() });
    runs['dicom_12bit_518_16bit'] = n / ((performance.now() - t) / 1000);
  }
  const o = { equalize: true, baseSize: 518 };
  const cache = await openCache(path.join(tmp, 'cache-518_8bit'));
  let t = performance.now();
  await Promise.all(cache.records.map((_, i) => loadCachedImage(cache, i, o)));
  const fromCache = n / ((performance.now() - t) / 1000);
  await cache.close();
  t = performance.now();
  await Promise.all(jpg.map((p) => loadTrainImage(p, o)));
  const fromJpeg = n / ((performance.now() - t) / 1000);
  const result = { machine: `${os.cpus()[0]?.model} (${os.cpus().length} logical CPUs)`, images: n, source: '2048x2048 16-bit PNG', prepare_images_per_s: runs, training_read_images_per_s: { prepared_cache_518_8bit: fromCache, jpeg_2048_on_the_fly: fromJpeg } };
  await mkdir('bench-results', { recursive: true });
  await writeFile('bench-results/data.json', `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `prepare (${n} × 2048² 16-bit PNG, ${os.availableParallelism()} workers): ${Object.entries(runs).map(([k, v]) => `${k} ${v.toFixed(1)} img/s`).join(', ')}\n` +
      `training read (→ 518 px, equalised): prepared cache ${fromCache.toFixed(1)} img/s vs JPEG 2048² on the fly ${fromJpeg.toFixed(1)} img/s\n`,
  );
  await rm(tmp, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`bench:data: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
