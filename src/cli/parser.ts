/**
 * The command-line grammar (yargs), as data: parsing never loads LibTorch and runs nothing, so tests call
 * {@link parseCli} directly and `--help` / argument errors stay fast. src/cli/main.ts dispatches.
 */
import yargs, { type Argv } from 'yargs';

export const COMMANDS = ['embed', 'info', 'export', 'phantom'] as const;
export type CommandName = (typeof COMMANDS)[number];

/** A `key=value` argument is a config override (e.g. `model.num_heads=3`), anything else an input. */
export const isOverride = (s: string) => /^[A-Za-z_][\w.]*=/.test(s);

function modelOptions(y: Argv) {
  return y
    .option('weights', {
      alias: 'w',
      type: 'string',
      describe: 'Weights: a Hugging Face model folder (config.json + model.safetensors) or a .safetensors file (HF or original DINOv2 names)',
    })
    .option('arch', {
      type: 'string',
      describe: 'Architecture preset (vit_small, vit_base, vit_large, vit_giant2); without --weights: a random-initialised model',
    })
    .option('device', { type: 'string', default: 'cpu', describe: 'cpu, cuda or cuda:N' })
    .option('threads', { type: 'number', describe: 'LibTorch threads (default: all cores, or $CXFORMER_THREADS)' })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of the random initialisation (no --weights)' });
}

function preprocessOptions(y: Argv) {
  return y
    .option('grayscale', { type: 'boolean', describe: 'Convert to 8-bit gray and replicate to 3 channels (default: from preprocessor_config.json, else true)' })
    .option('equalize', { type: 'boolean', describe: 'OpenCV global histogram equalisation (default: from preprocessor_config.json, else true)' })
    .option('resize', { type: 'string', describe: "Shorter side in px, or 'none' (default: from preprocessor_config.json, else 518)" })
    .option('crop', { type: 'string', describe: "Centre crop side in px, HxW, or 'none' (default: from preprocessor_config.json, else 518)" });
}

export function buildParser(args: readonly string[]): Argv {
  return yargs([...args])
    .scriptName('cxformer')
    .usage('$0 <command> [options]\n\nVision Transformer foundation models for chest X-rays (CXformer / DINOv2 with registers).')
    .command('embed [inputs..]', 'Extract features (CLS, register, patch tokens, last_hidden_state, chosen layers) from images or pixel tensors', (y) =>
      preprocessOptions(modelOptions(y))
        .positional('inputs', {
          type: 'string',
          array: true,
          describe: 'Images (PNG 8/16-bit, JPEG) and/or .safetensors files holding a float32 NCHW tensor "pixel_values"; key=value arguments are model overrides',
        })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output .safetensors file' })
        .option('batch-size', { alias: 'b', type: 'number', default: 8, describe: 'Images per forward pass' })
        .option('precision', { choices: ['f32', 'bf16'] as const, default: 'f32' as const, describe: 'f32, or bf16 autocast' })
        .option('layers', { type: 'string', describe: 'Comma-separated block indices (negative from the end) to also save, e.g. -4,-3,-2,-1' })
        .option('norm-layers', { type: 'boolean', default: false, describe: 'Apply the final norm to --layers outputs' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' })
        .example('$0 embed --weights models/cxformer-small xray1.png xray2.jpg --out feats.safetensors', '')
        .example('$0 embed --arch vit_small --out f.safetensors batch.safetensors model.num_register_tokens=0', 'random-initialised model, pre-normalised input')
        .check((a) => {
          const inputs = ((a.inputs as string[] | undefined) ?? []).filter((s) => !isOverride(String(s)));
          if (inputs.length === 0) throw new Error('embed: give at least one image or .safetensors input.\nExample usage: cxformer embed --weights <folder> a.png --out feats.safetensors');
          if (!a.weights && !a.arch) throw new Error('embed: give --weights <folder|file.safetensors>, or --arch <preset> for a random-initialised model.\nExample usage: cxformer embed --weights models/cxformer-small a.png --out feats.safetensors');
          if (!(Number.isInteger(a['batch-size']) && (a['batch-size'] as number) > 0)) throw new Error(`embed: --batch-size must be a positive integer, got ${a['batch-size']}`);
          if (a.layers !== undefined && !/^\s*-?\d+(\s*,\s*-?\d+)*\s*$/.test(String(a.layers))) throw new Error(`embed: --layers must be comma-separated integers such as -4,-3,-2,-1, got '${a.layers}'`);
          return true;
        }),
    )
    .command('info [weights]', 'Print architecture, parameter count, key layout and dtypes of weights (no LibTorch); --runtime: LibTorch runtime', (y) =>
      y
        .positional('weights', { type: 'string', describe: 'HF folder or .safetensors file' })
        .option('arch', { type: 'string', describe: 'Architecture preset instead of config.json / inference' })
        .option('runtime', { type: 'boolean', default: false, describe: 'Also load LibTorch and print its version, CUDA, threads, BLAS and oneDNN' })
        .option('threads', { type: 'number', describe: 'LibTorch threads for --runtime' })
        .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output' })
        .check((a) => {
          if (!a.weights && !a.runtime && !a.arch) throw new Error('info: give weights, --arch <preset> or --runtime.\nExample usage: cxformer info models/cxformer-small');
          return true;
        }),
    )
    .command('export [overrides..]', 'Write a Hugging Face folder (config.json, model.safetensors, preprocessor_config.json) or one original-layout file', (y) =>
      modelOptions(y)
        .positional('overrides', { type: 'string', array: true, describe: 'Model overrides key=value, e.g. model.num_register_tokens=0' })
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder (hf) or .safetensors file (original)' })
        .option('format', { choices: ['hf', 'original'] as const, default: 'hf' as const, describe: 'hf folder, or one file with original DINOv2 names' })
        .option('dtype', { choices: ['f32', 'bf16', 'f16'] as const, default: 'f32' as const, describe: 'Stored dtype' })
        .check((a) => {
          if (!a.weights && !a.arch) throw new Error('export: give --weights, or --arch <preset> for a random-initialised model.\nExample usage: cxformer export --weights model.safetensors --out exported/');
          const bad = ((a.overrides as string[] | undefined) ?? []).filter((s) => !isOverride(String(s)));
          if (bad.length) throw new Error(`export: unexpected argument(s) ${bad.join(' ')}: only key=value model overrides are positional`);
          return true;
        }),
    )
    .command('phantom', 'Write synthetic phantom chest radiographs (8-bit PNG), the built-in sample data', (y) =>
      y
        .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'Output folder' })
        .option('count', { alias: 'n', type: 'number', default: 8, describe: 'Number of images' })
        .option('size', { type: 'number', default: 512, describe: 'Image side in px' })
        .option('seed', { type: 'number', default: 0, describe: 'Seed' })
        .check((a) => {
          if (!(Number.isInteger(a.count) && a.count > 0)) throw new Error(`phantom: --count must be a positive integer, got ${a.count}`);
          if (!(Number.isInteger(a.size) && a.size >= 14)) throw new Error(`phantom: --size must be an integer >= 14, got ${a.size}`);
          return true;
        }),
    )
    .demandCommand(1, 'Give a command: embed, info, export or phantom.')
    .strict()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(120, process.stdout.columns || 100));
}

/** Parses argv without running anything; throws an Error with yargs' message on bad arguments. */
export function parseCli(args: readonly string[]): Record<string, unknown> & { _: (string | number)[] } {
  let failure: string | undefined;
  const parsed = buildParser(args)
    .exitProcess(false)
    .fail((msg, err) => {
      failure = err?.message ?? msg;
    })
    .parseSync();
  if (failure) throw new Error(failure);
  return parsed as Record<string, unknown> & { _: (string | number)[] };
}
