/** What marks a LLaVA folder, read without loading anything else (the CLI chooses its code path with it). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

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
