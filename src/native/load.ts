/**
 * The ONLY importer of the native addon (crates/node, built by `npm run build:native`).
 *
 * Loading it loads LibTorch (~0.6 s, ~200 MB), so it happens lazily, on the first call that computes:
 * `--help`, argument errors, `info` and config checks never get here.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Binding from './binding/binding.js';

export type NativeBinding = typeof Binding;
export type { NamedTensor, NativeBackbone, NativeTrainer } from './binding/binding.js';

/** An error from cxformer with a stable `code` (CXF_WEIGHTS, CXF_SHAPE, CXF_TORCH, CXF_ARG, …). */
export class CxformerError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CxformerError';
    this.code = code;
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository/package root: src/native or dist/native, two levels up. */
export const packageRoot = path.resolve(here, '..', '..');

function candidates(): string[] {
  const list: string[] = [];
  if (process.env.CXFORMER_BINDING) list.push(path.resolve(process.env.CXFORMER_BINDING));
  list.push(path.join(here, 'binding', 'binding.cjs'));
  list.push(path.join(packageRoot, 'src', 'native', 'binding', 'binding.cjs'));
  return list;
}

let cached: NativeBinding | undefined;

/** Loads the addon once; throws a CxformerError listing what was tried and how to fix it. */
export function native(): NativeBinding {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const file of candidates()) {
    if (!existsSync(file)) {
      errors.push(`${file}: not found`);
      continue;
    }
    try {
      cached = require(file) as NativeBinding;
      return cached;
    } catch (e) {
      errors.push(`${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new CxformerError(
    'CXF_NATIVE',
    [
      'Could not load the cxformer native addon (Rust core + LibTorch).',
      ...errors.map((e) => `  - ${e}`),
      'Possible solutions:',
      '  - Build it: bash scripts/setup.sh (creates .venv with torch==2.11.0, then npm run build:native).',
      '  - "libtorch_cpu.so: cannot open shared object file": the addon was built against another checkout\'s .venv;',
      '    rebuild, or set LD_LIBRARY_PATH to the lib folder of a torch 2.11.0 install',
      "    (python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+\"/lib\")').",
      '  - "undefined symbol": the torch found is not 2.11.0; cxformer is built for exactly torch 2.11.0.',
    ].join('\n'),
  );
}

/**
 * Runs a native call, turning its `[CODE] message` errors into CxformerErrors that keep the caller's
 * stack (native async errors have none of their own).
 */
export async function call<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
  const site = new Error();
  try {
    return await fn();
  } catch (e) {
    throw toCxformerError(e, what, site.stack);
  }
}

/** Synchronous variant of {@link call}. */
export function callSync<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toCxformerError(e, what, new Error().stack);
  }
}

function toCxformerError(e: unknown, what: string, stack: string | undefined): CxformerError {
  if (e instanceof CxformerError) return e;
  const raw = e instanceof Error ? e.message : String(e);
  const m = /^\[([A-Z_]+)\]\s*([\s\S]*)$/.exec(raw);
  const code = m?.[1] ?? (e as { code?: string })?.code ?? 'CXF_NATIVE';
  const err = new CxformerError(code, `${what}: ${m?.[2] ?? raw}`, { cause: e });
  if (stack) err.stack = `${err.name}: ${err.message}\n${stack.split('\n').slice(2).join('\n')}`;
  return err;
}
