/** `cxformer phantom`: the built-in synthetic chest radiographs. */
import { writePhantoms } from '../../data/phantom.js';
import { type Args, progress } from './common.js';

export async function run(a: Args): Promise<number> {
  const files = await writePhantoms(String(a.out), Number(a.count), { size: Number(a.size), seed: Number(a.seed) });
  progress(false).done(`phantom: wrote ${files.length} images (${a.size}x${a.size}, seed ${a.seed}) to ${a.out}`);
  return 0;
}
