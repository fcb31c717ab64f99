/**
 * Golden equivalence through the whole TS → N-API → Rust → LibTorch path on a chosen device:
 * `node dist/bench/golden-check.js [cpu|cuda|cuda:N]` with CXF_GOLDEN_DIR pointing at the fixtures
 * (default ../shared/fixtures/golden). Used by scripts/gpu-check.sh; exits 1 if f32 differs by ≥ 1e-4.
 */
import path from 'node:path';
import { loadBackbone, type Tensor } from '../backbone.js';
import { readSafetensors } from '../io/safetensors.js';
import { packageRoot } from '../native/load.js';

async function main(): Promise<number> {
  const device = process.argv[2] ?? 'cpu';
  const golden = process.env.CXF_GOLDEN_DIR ?? path.resolve(packageRoot, '..', 'shared', 'fixtures', 'golden');
  const ins = await readSafetensors(path.join(golden, 'vit_tiny_inputs.safetensors'));
  const ref = await readSafetensors(path.join(golden, 'vit_tiny_outputs.safetensors'));
  const model = await loadBackbone({ weights: path.join(golden, 'vit_tiny_hf'), device });
  const px = ins.tensors.get('pixel_values_56') as { data: Float32Array; shape: number[] };
  const masks = ins.tensors.get('masks_56') as { data: Uint8Array; shape: number[] };
  const diff = (t: Tensor, name: string) => {
    const r = ref.tensors.get(name)?.data as Float32Array;
    let m = 0;
    for (let i = 0; i < r.length; i++) m = Math.max(m, Math.abs((t.data[i] ?? NaN) - (r[i] ?? NaN)));
    return m;
  };
  let ok = true;
  for (const precision of ['f32', 'bf16'] as const) {
    for (const masked of [false, true]) {
      const out = await model.embed(px.data, px.shape, { precision, masks: masked ? { data: masks.data, shape: [2, 16] } : undefined });
      const sfx = masked ? '_56_masked' : '_56';
      const d = Math.max(diff(out.cls, `x_norm_clstoken${sfx}`), diff(out.patches, `x_norm_patchtokens${sfx}`), diff(out.registers, `x_norm_regtokens${sfx}`), diff(out.lastHiddenState, `hf_last_hidden_state${sfx}`));
      const tol = precision === 'f32' ? 1e-4 : 0.15;
      const pass = d < tol;
      ok &&= pass;
      process.stdout.write(`${device} ${precision}${masked ? ' masked' : ''}: max |diff| ${d.toExponential(3)} (tolerance ${tol}) ${pass ? 'ok' : 'FAIL'}\n`);
    }
  }
  return ok ? 0 : 1;
}

main().then(
  (c) => (process.exitCode = c),
  (e) => {
    process.stderr.write(`golden-check: ${(e as Error).stack}\n`);
    process.exitCode = 1;
  },
);
