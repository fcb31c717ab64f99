/** What marks a LLaVA folder, read without loading anything else (the CLI chooses its code path with it). */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { CxformerError } from '../native/load.js';

/** cxformer's file in a LLaVA model folder: the prompt, preprocessing and decoding `cxformer generate` uses. */
export const LLAVA_MODEL_FILE = 'cxformer-llava.json';

/** Whether `dir` holds a LLaVA (config.json with model_type "llava"). */
export function isLlavaFolder(dir: string): boolean {
  const f = path.join(dir, 'config.json');
  if (!existsSync(f)) return false;
  try {
    return (JSON.parse(readFileSync(f, 'utf8')) as { model_type?: string }).model_type === 'llava';
  } catch {
    return false;
  }
}

/** A JSON file of a model or LM folder as an object; invalid JSON or another value is an input error naming the file. */
export async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let v: unknown;
  try {
    v = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new CxformerError('CXF_INPUT', `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new CxformerError('CXF_INPUT', `${file}: expected a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
