/** `cxformer info`: what a weight file is (no LibTorch), and with --runtime what LibTorch this is. */
import { statSync } from 'node:fs';
import { numParams, ffnHidden } from '../../model/config.js';
import { describeLayout, resolveModel } from '../../model/weights.js';
import { type Args } from './common.js';

function human(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} K` : String(n);
}

export async function run(a: Args): Promise<number> {
  const report: Record<string, unknown> = {};
  const { isLlavaFolder } = await import('../../llava/folder.js');
  if (a.weights && isLlavaFolder(String(a.weights))) {
    // A LLaVA folder: its parts from config.json and the headers.
    const { llavaInfo, formatLlavaInfo } = await import('../../llava/info.js');
    const i = await llavaInfo(String(a.weights));
    report.llava = i;
    if (!a.json) process.stdout.write(`${formatLlavaInfo(i, human).join('\n')}\n`);
  } else if (a.weights || a.arch) {
    const r = await resolveModel({ weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides: [] });
    const c = r.config;
    const dtypes: Record<string, number> = {};
    let stored = 0;
    for (const t of r.header?.tensors.values() ?? []) {
      const n = t.shape.reduce((x, y) => x * y, 1);
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
      stored += n;
    }
    Object.assign(report, {
      weights: r.weights?.file ?? null,
      file_bytes: r.weights ? statSync(r.weights.file).size : null,
      layout: r.layout ? describeLayout(r.layout) : null,
      architecture_source: r.configSource,
      config: c,
      interpolation: r.interpolation,
      parameters: numParams(c),
      stored_values: r.header ? stored : null,
      dtypes,
      tokens_at_training_size: 1 + c.num_register_tokens + (c.img_size / c.patch_size) ** 2,
      preprocess: r.preprocess ?? 'CXformer default (no preprocessor_config.json)',
      metadata: r.header?.metadata ?? null,
    });
    if (!a.json) {
      const lines = [
        `weights:        ${r.weights?.file ?? '(none: random initialisation)'}`,
        ...(r.layout ? [`layout:         ${describeLayout(r.layout)}`] : []),
        `architecture:   from ${r.configSource}`,
        `  ViT: D=${c.embed_dim}, depth=${c.depth}, heads=${c.num_heads} (head dim ${c.embed_dim / c.num_heads}), patch ${c.patch_size}, ${c.ffn.toUpperCase()} FFN hidden ${ffnHidden(c)}`,
        `  registers=${c.num_register_tokens}, position grid ${c.img_size / c.patch_size}x${c.img_size / c.patch_size} (${c.img_size} px), LayerScale ${c.layerscale_init === null ? 'off' : 'on'}, mask token ${c.use_mask_token ? 'yes' : 'no'}`,
        `  position interpolation: ${r.interpolation}`,
        `parameters:     ${numParams(c).toLocaleString('en-US')} (${human(numParams(c))})`,
        ...(r.header ? [`dtypes:         ${Object.entries(dtypes).map(([k, v]) => `${k} ${human(v)}`).join(', ')}; file ${human(report.file_bytes as number)}B`] : []),
        `tokens:         ${report.tokens_at_training_size} at ${c.img_size} px (1 CLS + ${c.num_register_tokens} registers + patches)`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
  }
  if (a.runtime) {
    // Only here does `info` load LibTorch.
    const { native, callSync } = await import('../../native/load.js');
    const { threadCount } = await import('../../backbone.js');
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(a.threads as number | undefined)));
    const rt = JSON.parse(callSync('runtimeInfo', () => bind.runtimeInfo())) as Record<string, unknown>;
    const full = rt.report;
    delete rt.report;
    report.runtime = rt;
    if (!a.json) {
      process.stdout.write(
        [
          `torch:          ${rt.torch_version} (${rt.libtorch_lib})`,
          `CUDA:           ${rt.cuda_available ? `available, ${rt.cuda_device_count} device(s), cuDNN ${rt.cudnn_available}` : 'not available'}`,
          `threads:        ${rt.threads} intra-op, ${rt.interop_threads} inter-op`,
          `BLAS:           ${rt.blas}; oneDNN: ${rt.onednn}; CPU capability ${rt.cpu_capability}`,
          '',
        ].join('\n'),
      );
      if (process.env.CXFORMER_DEBUG) process.stdout.write(String(full));
    }
  }
  if (a.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return 0;
}
