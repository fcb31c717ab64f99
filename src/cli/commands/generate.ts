/**
 * `cxformer generate --model DIR IMAGES… [--beam N | --sample …] [--out preds.jsonl]`: reports for images with a
 * captioner of `finetune --task report` (src/rrg/generate.ts) or a LLaVA folder of `--decoder llm` (src/llava/generate.ts). Without --out the reports are printed, one block per
 * image; with --out they are written as JSON Lines `{id, image, generated}` (id = the path as given), the input of
 * `evaluate --task report`. --stream prints each report word by word as it is decoded (ReportGenerator.stream).
 */
import path from 'node:path';

import { writeFileAtomic } from '../../data/fsutil.js';
import { loadReportGenerator } from '../../rrg/generate.js';
import { CxformerError } from '../../native/load.js';
import type { GenerateOptions } from '../../rrg/native.js';
import { type Args, progress } from './common.js';

export async function run(a: Args): Promise<number> {
  const images = ((a.images as string[] | undefined) ?? []).map(String);
  const log = progress(Boolean(a.quiet));
  const dir = String(a.model);
  const { isLlavaFolder, loadLlavaGenerator } = await import('../../llava/generate.js');
  const dtype = (a.dtype ?? 'f32') as 'f32' | 'bf16';
  if (dtype !== 'f32' && !isLlavaFolder(dir)) throw new CxformerError('CXF_ARG', `--dtype ${dtype}: ${dir} is a captioner, which decodes in float32`);
  const llava = isLlavaFolder(dir) ? await loadLlavaGenerator(dir, { device: String(a.device ?? 'cpu'), dtype }) : null;
  const gen = llava ?? (await loadReportGenerator(dir, { device: String(a.device ?? 'cpu') }));
  const o: GenerateOptions & { contexts?: { indication: string }[] } = {};
  if (a.indication !== undefined) {
    // The prompt field of a LLaVA trained with --condition indication, the same for every image given.
    if (!llava?.fields.includes('indication')) throw new CxformerError('CXF_ARG', `--indication: ${dir} ${llava ? 'was trained without indications in its prompt (finetune --condition indication)' : 'is a captioner, whose reports have no prompt'}`);
    o.contexts = images.map(() => ({ indication: String(a.indication) }));
  }
  if (a.sample) Object.assign(o, { strategy: 'sample', temperature: Number(a.temperature), topP: Number(a['top-p']), ...(a['top-k'] !== undefined ? { topK: Number(a['top-k']) } : {}), seed: Number(a.seed) });
  else if (a.beam !== undefined) Object.assign(o, { strategy: 'beam', numBeams: Number(a.beam) });
  if (a['max-new-tokens'] !== undefined) o.maxNewTokens = Number(a['max-new-tokens']);
  let texts: string[];
  if (a.stream) {
    // One image at a time: its name, then its words as the decoder picks them; --out still gets every report.
    texts = [];
    let shown = 0; // images whose name is out
    for await (const e of gen.stream(images, o)) {
      if (shown <= e.index) {
        shown = e.index + 1;
        process.stdout.write(`${e.image}\n`);
      }
      process.stdout.write(e.text);
      if (e.report !== undefined) {
        texts.push(e.report);
        process.stdout.write('\n\n');
      }
    }
  } else {
    texts = await gen.generate(images, { ...o, onProgress: (d, t) => log.update('generate', d, t) });
  }
  if (a.out !== undefined) {
    await writeFileAtomic(String(a.out), `${images.map((im, i) => JSON.stringify({ id: im, image: path.resolve(im), generated: texts[i] })).join('\n')}\n`);
    log.done(`generate: ${images.length} reports → ${a.out}`);
  } else if (!a.stream) {
    for (const [i, im] of images.entries()) process.stdout.write(`${im}\n${texts[i]}\n\n`);
  }
  return 0;
}
