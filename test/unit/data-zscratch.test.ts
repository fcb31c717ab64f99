import { readFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { it } from 'vitest';
import { parseCsv } from '../../src/data/csv.js';
import { rleDecode } from '../../src/data/rle.js';
import { synthDataset } from '../../src/data/synth.js';

it('scratch', async () => {
  const out = '/tmp/scr';
  const res = await synthDataset({ out, n: 200, seed: 7, size: 256 });
  const masks = parseCsv(await readFile(path.join(out, 'masks.csv'), 'utf8'));
  const lines: string[] = [];
  for (let k = 0; k < 200; k++) {
    const im = res.images[k]!;
    const [p, H, W, L, R] = masks.rows[k] as string[];
    const h = +H!, w = +W!;
    const { data } = await sharp(path.join(out, p!)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    const lung = { left: rleDecode(L!, h, w), right: rleDecode(R!, h, w) };
    for (const nd of im.nodules) {
      let sIn = 0, cIn = 0, sOut = 0, cOut = 0;
      const r = nd.diameterPx / 2;
      for (let y = Math.floor(nd.y - 3 * r); y <= nd.y + 3 * r; y++) for (let x = Math.floor(nd.x - 3 * r); x <= nd.x + 3 * r; x++) {
        const d = Math.hypot(x + 0.5 - nd.x, y + 0.5 - nd.y); const v = data[y * w + x]!;
        if (d < 0.5 * r) { sIn += v; cIn++; } else if (d > 1.5 * r && d < 2.5 * r) { sOut += v; cOut++; }
      }
      lines.push(`nodule ${k} r=${r.toFixed(1)} in=${(sIn / cIn).toFixed(0)} out=${(sOut / cOut).toFixed(0)} diff=${(sIn / cIn - sOut / cOut).toFixed(0)}`);
    }
    // effusion: lowest 15% rows of each lung
    const base = (m: Uint8Array) => { let y0 = h, y1 = -1; for (let i = 0; i < m.length; i++) if (m[i]) { const y = (i / w) | 0; if (y < y0) y0 = y; if (y > y1) y1 = y; } const yc = y1 - 0.2 * (y1 - y0); let s = 0, c = 0; for (let i = 0; i < m.length; i++) if (m[i] && (i / w | 0) >= yc) { s += data[i]!; c++; } return s / c; };
    if (im.effusion.length === 1 && !im.pneumothorax) {
      const side = im.effusion[0]!.side;
      lines.push(`effusion ${k} ${im.effusion[0]!.size} eff=${base(lung[side]).toFixed(0)} other=${base(lung[side === 'left' ? 'right' : 'left']).toFixed(0)}`);
    }
    if (im.pneumothorax && im.effusion.length === 0) {
      const band = (m: Uint8Array, lateralIsMax: boolean, kpx: number) => {
        let y0 = h, y1 = -1; for (let i = 0; i < m.length; i++) if (m[i]) { const y = (i / w) | 0; if (y < y0) y0 = y; if (y > y1) y1 = y; }
        let s = 0, c = 0;
        for (let y = y0; y < y0 + 0.5 * (y1 - y0); y++) { let lo = w, hi = -1; for (let x = 0; x < w; x++) if (m[y * w + x]) { if (x < lo) lo = x; if (x > hi) hi = x; } if (hi < 0) continue;
          for (let q = 0; q < kpx; q++) { const x = lateralIsMax ? hi - q : lo + q; if (m[y * w + x]) { s += data[y * w + x]!; c++; } } }
        return s / c;
      };
      const side = im.pneumothorax.side; const kpx = Math.max(1, Math.floor(im.pneumothorax.gapPx / 2));
      const ptx = band(lung[side], side === 'left', kpx), other = band(lung[side === 'left' ? 'right' : 'left'], side !== 'left', kpx);
      lines.push(`ptx ${k} ${im.pneumothorax.size} gap=${im.pneumothorax.gapPx.toFixed(1)} ptx=${ptx.toFixed(0)} other=${other.toFixed(0)} diff=${(other - ptx).toFixed(0)}`);
    }
  }
  console.log(lines.join('\n'));
}, 120000);
