/**
 * Writing a Hugging Face `config.json` whose JSON types match transformers' config classes.
 *
 * transformers 5.x declares its configs as strict dataclasses (`@strict`, huggingface_hub): `layerscale_value: float`
 * refuses the JSON integer `1` (`StrictDataclassFieldValidationError … expected float, got int`) and
 * `mlp_ratio: int` refuses `4.0`. `JSON.stringify` writes 1.0 as `1`, so the fields declared `float` (or
 * `float | int`) are written with a decimal point here, and the fields declared `int` must hold integers.
 * The lists come from transformers 5.25's Dinov2Config / Dinov2WithRegistersConfig (and PreTrainedConfig);
 * test/fixtures/hf-config-types.json records those declarations (scripts/hf-config-types.py regenerates it) and
 * test/unit/hf-export.test.ts checks every field this module writes against it. Pure TypeScript, no LibTorch.
 */
import { rename, unlink, writeFile } from 'node:fs/promises';
import { ConfigError } from './config.js';

/** Top-level config.json fields declared `float` or `float | int`: written as JSON floats (`1.0`, `0.0`, `1e-06`). */
export const HF_FLOAT_FIELDS: ReadonlySet<string> = new Set([
  'hidden_dropout_prob',
  'attention_probs_dropout_prob',
  'initializer_range',
  'layer_norm_eps',
  'layerscale_value',
  'drop_path_rate',
]);

/** Top-level fields declared `int` (or `int | list[int] | …` for the sizes): a number there must be an integer. */
export const HF_INT_FIELDS: ReadonlySet<string> = new Set([
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'mlp_ratio',
  'image_size',
  'patch_size',
  'num_channels',
  'num_register_tokens',
  'num_labels',
  'chunk_size_feed_forward',
]);

const MARK = '@@cxformer-float@@';

/** A finite number as a JSON float literal: integers get `.0` (1 → `1.0`), others keep JS's shortest form. */
export function floatLiteral(v: number): string {
  if (!Number.isFinite(v)) throw new ConfigError(`config.json: expected a finite number, found ${v}`);
  const s = JSON.stringify(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/**
 * config.json text of `cfg` (2-space indent, trailing newline): {@link HF_FLOAT_FIELDS} as JSON floats; a
 * non-integer in {@link HF_INT_FIELDS} is refused (transformers would refuse it when loading).
 *
 * @throws ConfigError naming the field, what transformers declares and the value found
 */
export function hfConfigJson(cfg: Record<string, unknown>, source = 'config.json'): string {
  for (const k of HF_INT_FIELDS) {
    const v = cfg[k];
    if (typeof v === 'number' && !Number.isInteger(v)) {
      throw new ConfigError(
        `${source}: transformers declares ${k} as int, found ${v}${k === 'mlp_ratio' ? ' (model.mlp_ratio); such a model cannot be loaded by transformers\' Dinov2 classes: export it with --format original' : ''}`,
      );
    }
  }
  const text = JSON.stringify(
    cfg,
    function (this: unknown, key: string, value: unknown) {
      return this === cfg && HF_FLOAT_FIELDS.has(key) && typeof value === 'number' ? `${MARK}${floatLiteral(value)}` : value;
    },
    2,
  );
  return `${text.replace(new RegExp(`"${MARK}([^"]*)"`, 'g'), '$1')}\n`;
}

/** Writes {@link hfConfigJson} of `cfg` to `file` through a temp file + rename in the same folder. */
export async function writeHfConfig(file: string, cfg: Record<string, unknown>): Promise<void> {
  const text = hfConfigJson(cfg, file);
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await writeFile(tmp, text);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
