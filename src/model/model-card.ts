/**
 * The README.md model card written into every exported Hugging Face folder: what the folder holds, and the exact
 * transformers recipe that reproduces cxformer's preprocessing (AutoImageProcessor reads preprocessor_config.json
 * as a BitImageProcessor and silently ignores cxformer's `do_grayscale` / `cxformer_equalize` /
 * `cxformer_crop_rounding` keys), plus, for classification exports, how to get the probabilities of cxformer's
 * predictions.csv. The snippets are run by scripts/hf-interop-check.py (transformers 5.25). Pure TypeScript.
 */
import type { PreprocessOptions } from '../image/options.js';
import type { VitConfig } from './config.js';

/** The classification part of an export. */
export type CardHead =
  | { kind: 'none' }
  /** transformers' *ForImageClassification: classifier on concat(CLS, mean patch tokens) of the last layer. */
  | { kind: 'hf'; className: string; classes: string[]; labelType: string; source: string }
  /** cxformer's head (other feature layouts, MLP heads) in head.safetensors + head_config.json. */
  | { kind: 'cxformer'; classes: string[]; labelType: string; clsLayers: number; avgpool: boolean; hidden: number[]; source: string };

export interface CardOptions {
  config: VitConfig;
  preprocess: PreprocessOptions;
  /** What was exported (weights file, run, checkpoint). */
  source: string;
  /** The transformers class of the backbone (Dinov2Model / Dinov2WithRegistersModel). */
  backboneClass: string;
  head: CardHead;
  /** A pretraining export's dino_head.safetensors. */
  dinoHead?: boolean;
}

/** numpy equivalent of cv2.equalizeHist (bit-exact: float32 scale, round half to even, constant image unchanged). */
const EQUALIZE_PY = `def equalize_hist(gray):
    """cv2.equalizeHist of an 8-bit (H, W) array, in numpy (cv2.equalizeHist(gray) gives the same)."""
    hist = np.bincount(gray.ravel(), minlength=256)
    i = int(np.flatnonzero(hist)[0])
    if hist[i] == gray.size:  # constant image: unchanged
        return gray.copy()
    scale = np.float32(255) / np.float32(gray.size - hist[i])
    lut = np.rint((np.cumsum(hist) - hist[i]).astype(np.float32) * scale)
    lut[: i + 1] = 0
    return np.clip(lut, 0, 255).astype(np.uint8)[gray]`;

/** The Python preprocessing function for `p` (defines `pixel_values_of(path)`), as run by the harness. */
export function preprocessSnippet(p: PreprocessOptions): string {
  const lines: string[] = [];
  if (p.grayscale) {
    lines.push(
      'def load_image(path):',
      '    im = Image.open(path)',
      '    if im.mode.startswith("I;16"):  # 16-bit PNG: cxformer keeps round(v / 257)',
      '        gray = np.round(np.asarray(im, dtype=np.float64) / 257).astype(np.uint8)',
      '    else:',
      '        gray = np.asarray(im.convert("L"))',
      p.equalize ? '    gray = equalize_hist(gray)' : '    # this model was trained without equalisation',
      '    return Image.fromarray(gray).convert("RGB")',
    );
  } else {
    lines.push(
      'def load_image(path):',
      '    rgb = np.asarray(Image.open(path).convert("RGB"))',
      p.equalize ? '    rgb = np.stack([equalize_hist(rgb[..., c]) for c in range(3)], axis=-1)  # each channel' : '    # this model was trained without equalisation',
      '    return Image.fromarray(rgb)',
    );
  }
  lines.push('', '');
  const torchvisionCrop = p.crop !== null && p.cropRounding === 'torchvision';
  if (torchvisionCrop) {
    lines.push(
      'def pixel_values_of(paths):',
      '    # The processor resizes and normalises; the centre crop is done here with torchvision\'s offset rounding',
      '    # (cxformer_crop_rounding "torchvision"): the processor floors the offset, one pixel off for odd margins.',
      '    ch, cw = processor.crop_size["height"], processor.crop_size["width"]',
      '    out = []',
      '    for p in paths:  # one at a time: resized images of other aspect ratios differ in size',
      '        a = processor(images=load_image(p), do_center_crop=False, return_tensors="np").pixel_values[0]',
      '        top, left = round((a.shape[1] - ch) / 2), round((a.shape[2] - cw) / 2)  # Python rounds half to even',
      '        out.append(a[:, top : top + ch, left : left + cw])',
      '    return torch.from_numpy(np.stack(out))',
    );
  } else {
    lines.push(
      'def pixel_values_of(paths):',
      '    return processor(images=[load_image(p) for p in paths], return_tensors="pt").pixel_values',
    );
  }
  return `${p.equalize ? `${EQUALIZE_PY}\n\n\n` : ''}${lines.join('\n')}`;
}

function describeArch(c: VitConfig): string {
  return `ViT D ${c.embed_dim}, ${c.depth} blocks, ${c.num_heads} heads, patch ${c.patch_size}, ${c.img_size} px, ${c.num_register_tokens} register tokens, ${c.ffn === 'swiglu' ? 'SwiGLU' : 'MLP'} FFN`;
}

function describePreprocess(p: PreprocessOptions): string {
  const size = (v: number | [number, number] | null) => (v === null ? 'none' : typeof v === 'number' ? `${v}` : `${v[0]}×${v[1]}`);
  return [
    p.grayscale ? '8-bit gray (PIL `convert("L")`; 16-bit PNGs round(v/257))' : 'RGB',
    p.equalize ? 'OpenCV `equalizeHist`' : 'no equalisation',
    `resize ${typeof p.resize === 'number' ? `shorter side ${p.resize}` : size(p.resize)} (${p.resample})`,
    `centre crop ${size(p.crop)}${p.crop !== null ? ` (offset rounding: ${p.cropRounding})` : ''}`,
    `/255, mean ${p.mean.join(', ')}, std ${p.std.join(', ')}`,
  ].join(' → ');
}

function headSection(h: CardHead, c: VitConfig): string {
  if (h.kind === 'none') return '';
  const act = h.labelType === 'multiclass' ? 'softmax' : h.labelType === 'unknown' ? 'softmax or sigmoid (the source config.json sets no problem_type)' : 'sigmoid';
  const probs = h.labelType === 'multiclass' ? 'logits.softmax(-1)' : 'logits.sigmoid()';
  if (h.kind === 'hf') {
    return `
## Classification head

\`${h.className}\` (from ${h.source}): classes ${h.classes.map((s) => `\`${s}\``).join(', ')} (\`config.id2label\`),
label type ${h.labelType}: probabilities are the ${act} of the logits, as in cxformer's \`predictions.csv\`.
The classifier reads concat(CLS token, mean of the patch tokens${c.num_register_tokens ? ', registers excluded' : ''}) of the last block after the final
norm — cxformer's features with \`--cls-layers 1 --avgpool\`, the DINOv2 linear layout transformers implements.

\`\`\`python
model = AutoModelForImageClassification.from_pretrained(folder).eval()
with torch.no_grad():
    logits = model(pixel_values=pixel_values_of(paths)).logits
probs = ${probs}  # columns: model.config.id2label
\`\`\`
`;
  }
  const R = c.num_register_tokens;
  const n = h.clsLayers;
  const mlp = h.hidden.length > 0;
  return `
## Classification head (cxformer layout)

This head cannot be expressed as transformers' \`Dinov2ForImageClassification\` (which reads concat(CLS, mean patch
tokens) of the last block into one linear layer): it reads the CLS tokens of the last ${n} blocks${h.avgpool ? ' and the mean patch tokens' : ''}${mlp ? ` through an MLP (hidden ${h.hidden.join(', ')}, exact GELU)` : ''}.
\`model.safetensors\` is the backbone (\`${c.num_register_tokens ? 'Dinov2WithRegistersModel' : 'Dinov2Model'}\`); the head (from ${h.source}) is in
\`head.safetensors\` (\`head.<i>.weight\` [out, in] / \`head.<i>.bias\`, Linear layers in order, exact GELU between them) with
\`head_config.json\`. Features, in this order (F = ${n + (h.avgpool ? 1 : 0)}·D = ${(n + (h.avgpool ? 1 : 0)) * c.embed_dim}):

1. the CLS token of each of the last ${n} blocks, oldest first, each after the final layer norm;
${h.avgpool ? `2. the mean of the last block's patch tokens after the final layer norm${R ? ` (the ${R} register tokens excluded)` : ''}.\n` : ''}
Classes ${h.classes.map((s) => `\`${s}\``).join(', ')}; label type ${h.labelType}: probabilities are the ${act} of the logits, as in
cxformer's \`predictions.csv\`.

\`\`\`python
from safetensors.torch import load_file

model = AutoModel.from_pretrained(folder).eval()
head = load_file(f"{folder}/head.safetensors")
n_layers = len(head) // 2
with torch.no_grad():
    out = model(pixel_values=pixel_values_of(paths), output_hidden_states=True)
    feats = [model.layernorm(h)[:, 0] for h in out.hidden_states[-${n}:]]  # CLS of the last ${n} blocks
${h.avgpool ? `    feats.append(out.last_hidden_state[:, ${1 + R}:].mean(1))  # mean patch token\n` : ''}    x = torch.cat(feats, dim=1)
    for i in range(n_layers):
        x = torch.nn.functional.linear(x, head[f"head.{i}.weight"], head[f"head.{i}.bias"])
        if i + 1 < n_layers:
            x = torch.nn.functional.gelu(x)
probs = ${h.labelType === 'multiclass' ? 'x.softmax(-1)' : 'x.sigmoid()'}  # columns: head_config.json "classes"
\`\`\`
`;
}

/** README.md of an exported folder. */
export function modelCard(o: CardOptions): string {
  const { config: c, preprocess: p, head: h } = o;
  const classification = h.kind !== 'none';
  const ignored = [p.grayscale && 'do_grayscale', p.equalize && 'cxformer_equalize', p.crop !== null && p.cropRounding === 'torchvision' && 'cxformer_crop_rounding']
    .filter(Boolean)
    .map((k) => `\`${k}\``);
  const importLine = `from transformers import AutoImageProcessor, ${h.kind === 'hf' ? 'AutoModelForImageClassification' : 'AutoModel'}`;
  return `---
library_name: transformers
pipeline_tag: ${classification ? 'image-classification' : 'image-feature-extraction'}
tags:
- cxformer
- dinov2
- chest-x-ray
---

# Exported by cxformer

${h.kind === 'hf' ? `\`${h.className}\`` : `\`${o.backboneClass}\``} exported by cxformer from \`${o.source}\`: ${describeArch(c)}.
Files: \`config.json\`, \`model.safetensors\`, \`preprocessor_config.json\`${h.kind === 'cxformer' ? ', `head.safetensors`, `head_config.json`' : ''}${o.dinoHead ? ', `dino_head.safetensors` (teacher DINO / iBOT heads, for continued pretraining)' : ''}, this README.

## Preprocessing: do it as below, not with the processor alone

The model expects ${describePreprocess(p)}.
\`AutoImageProcessor\` loads \`preprocessor_config.json\` as a \`BitImageProcessor\` and **silently ignores**
${ignored.length ? ignored.join(', ') : 'cxformer\'s own keys'}${p.equalize ? ': without the equalisation its pixels differ from cxformer\'s by up to about 1.2 and the features by several units' : ''}.
The recipe below ${p.equalize ? 'equalises first (OpenCV `equalizeHist` on the 8-bit gray image, here in numpy), then' : ''} calls the processor with the
PIL backend (transformers 5.x \`backend="pil"\`; the default torchvision backend resizes slightly differently, up to about 0.04)${p.crop !== null && p.cropRounding === 'torchvision' ? ', and takes the centre crop itself with torchvision\'s rounding' : ''}.
With transformers 5.25 and 4.57 it reproduces cxformer's pixels exactly (checked by cxformer's scripts/hf-interop-check.py;
4.x ignores \`backend="pil"\` and uses its slow PIL processor unless \`use_fast=True\` is given).

\`\`\`python
import numpy as np
import torch
from PIL import Image
${importLine}

folder = "path/to/this/folder"
processor = AutoImageProcessor.from_pretrained(folder, backend="pil")


${preprocessSnippet(p)}
\`\`\`
${
  classification
    ? ''
    : `
\`\`\`python
model = AutoModel.from_pretrained(folder).eval()
with torch.no_grad():
    out = model(pixel_values=pixel_values_of(["chest.png"]))
cls = out.pooler_output                                   # [N, D], as cxformer embed's "cls"
patches = out.last_hidden_state[:, ${1 + c.num_register_tokens}:]  # [N, patches, D], as "patches"
\`\`\`
`
}${headSection(h, c)}`;
}
