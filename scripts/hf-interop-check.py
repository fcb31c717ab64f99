#!/usr/bin/env python3
"""Golden harness of cxformer's Hugging Face exports against transformers (run by hand, outside CI: it needs a
python with transformers, torch, numpy, Pillow and safetensors, e.g. /work/refvenv/bin/python with transformers 5.25).

What it checks, on small random models and synthetic images (nothing is downloaded):
1. config.json loads with AutoConfig (transformers 5.x strict dataclasses: float fields written as floats) and
   AutoModel loads model.safetensors with no missing or unexpected keys.
2. Preprocessing: the recipe in the exported README.md (executed as written: equalise first, then the processor
   with the PIL backend, centre crop with torchvision's rounding) gives cxformer's pixels; the processor alone
   (AutoImageProcessor, default backend, ignoring do_grayscale / cxformer_equalize) does not, by how much.
3. Features: transformers' model on the recipe's pixels against `cxformer embed` on the image files (cls, patches,
   last_hidden_state), at the model's own resolution (registers) and at an interpolated one (no registers).
4. Classification: `cxformer finetune` heads exported with `cxformer export --head` reproduce the probabilities of
   cxformer's eval/predictions.csv in transformers — Dinov2ForImageClassification and
   Dinov2WithRegistersForImageClassification (one linear layer on CLS + mean patch token), and the README snippet of
   a cxformer-layout head (2 CLS layers, MLP); re-exporting a classification folder carries classifier.* through,
   and --format original refuses it.
5. LLaVA: a `cxformer finetune --task report --decoder llm` run (the tiny random Qwen2 of the golden fixtures, a
   random 2-block ViT, the align stage on phantoms) exported with `cxformer export --format llava-hf` loads in
   transformers' LlavaForConditionalGeneration (no custom code; the grown vocabulary and `<image>` in the tokenizer),
   AutoProcessor gives a LlavaProcessor, and transformers' greedy decoding of cxformer's pixels and prompt (the image
   token expanded as the processor expands it) gives `cxformer generate`'s tokens.

Usage:
    /work/refvenv/bin/python scripts/hf-interop-check.py [--root <cxformer package root>] [--work DIR] [--json out.json]
--root defaults to this repository (dist/ must be built: npm run build). Exit status 1 when a check fails.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURE_TOL = 1e-4  # float32, two implementations of the same network
PROB_TOL = 2e-6  # predictions.csv keeps 8 significant digits

results = {"transformers": transformers.__version__, "torch": torch.__version__, "checks": []}
failed = []


def record(name, value, ok, note=""):
    results["checks"].append({"check": name, "value": value, "ok": bool(ok), **({"note": note} if note else {})})
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value}{f'  ({note})' if note else ''}")
    if not ok:
        failed.append(name)


def cli(root, *args, expect_ok=True):
    r = subprocess.run(["node", os.path.join(root, "dist", "cli", "main.js"), *args], capture_output=True, text=True,
                       env={**os.environ, "CXFORMER_THREADS": os.environ.get("CXFORMER_THREADS", "2")})
    if expect_ok and r.returncode != 0:
        sys.exit(f"cxformer {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def cxformer_pixels(root, folder, paths, out):
    """cxformer's preprocessing of `paths` with the folder's preprocessor_config.json, as NCHW float32."""
    script = f"""
import {{ readHfPreprocessorConfig }} from {json.dumps(os.path.join(root, 'dist', 'image', 'hf-config.js'))};
import {{ preprocessBatch }} from {json.dumps(os.path.join(root, 'dist', 'image', 'preprocess.js'))};
import {{ writeSafetensors }} from {json.dumps(os.path.join(root, 'dist', 'io', 'safetensors.js'))};
const pre = await readHfPreprocessorConfig({json.dumps(os.path.join(folder, 'preprocessor_config.json'))});
const b = await preprocessBatch({json.dumps(paths)}, pre);
await writeSafetensors({json.dumps(out)}, {{ pixel_values: {{ dtype: 'F32', shape: b.shape, data: b.data }} }});
"""
    r = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cxformer preprocessing failed:\n{r.stderr}")
    return load_file(out)["pixel_values"]


def readme_blocks(folder):
    with open(os.path.join(folder, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def run_recipe(folder):
    """Executes the README's preprocessing block as written (only `folder` is set); returns its namespace."""
    code = readme_blocks(folder)[0].replace('folder = "path/to/this/folder"', f"folder = {folder!r}")
    ns = {}
    exec(compile(code, f"{folder}/README.md", "exec"), ns)
    return ns


def max_diff(a, b):
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


def make_images(d):
    """Non-square 8-bit gray, RGB and 16-bit gray PNGs with smooth structure and noise."""
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(300, 260), (200, 333), (260, 300), (241, 280)]):
        y, x = np.mgrid[0:h, 0:w]
        a = 128 + 60 * np.sin(x / 17.0 + i) + 40 * np.cos(y / 23.0) + rng.normal(0, 10, (h, w))
        a8 = a.clip(0, 255).astype(np.uint8)
        p = os.path.join(d, f"img{i}.png")
        if i == 2:
            Image.fromarray(np.stack([a8, np.roll(a8, 5, 0), 255 - a8], -1)).save(p)
        elif i == 3:
            Image.fromarray((a.clip(0, 255) * 257).astype(np.uint16)).save(p)  # mode I;16
        else:
            Image.fromarray(a8).save(p)
        paths.append(p)
    return paths


def check_backbone(root, work, name, folder, images):
    cfg = AutoConfig.from_pretrained(folder)
    record(f"{name}: AutoConfig", f"{type(cfg).__name__}, layerscale_value {cfg.layerscale_value!r}", isinstance(cfg.layerscale_value, float))
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    model.eval()
    missing = sorted(map(str, [*info["missing_keys"], *info["unexpected_keys"], *info["mismatched_keys"]]))
    record(f"{name}: AutoModel keys", f"{type(model).__name__}, missing/unexpected/mismatched {list(missing)}", not missing)

    ref = cxformer_pixels(root, folder, images, os.path.join(work, f"{name}-pixels.safetensors"))
    ns = run_recipe(folder)
    pv = ns["pixel_values_of"](images)
    record(f"{name}: README recipe pixels vs cxformer", max_diff(pv, ref), max_diff(pv, ref) == 0.0)
    plain = AutoImageProcessor.from_pretrained(folder)
    raw = plain(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt").pixel_values
    record(f"{name}: AutoImageProcessor alone ({type(plain).__name__}) pixels vs cxformer, 8-bit gray / all images",
           [max_diff(raw[:2], ref[:2]), max_diff(raw, ref)], True, "expected to differ: it ignores do_grayscale / cxformer_equalize")
    pil, ns["processor"] = ns["processor"], plain  # the recipe with the default (torchvision) backend instead
    record(f"{name}: README recipe with the default {type(plain).__name__} backend, pixels vs cxformer", max_diff(ns["pixel_values_of"](images), ref), True,
           "expected to differ slightly: torchvision's bicubic resize is not PIL's")
    ns["processor"] = pil

    out = os.path.join(work, f"{name}-embed.safetensors")
    cli(root, "embed", "--weights", folder, *images, "--out", out, "-q")
    cx = load_file(out)
    with torch.no_grad():
        hf = model(pixel_values=pv)
        hf_raw = model(pixel_values=raw)
    R = cfg.num_register_tokens if hasattr(cfg, "num_register_tokens") else 0
    d_cls = max_diff(hf.pooler_output, cx["cls"])
    d_patch = max_diff(hf.last_hidden_state[:, 1 + R:], cx["patches"])
    d_last = max_diff(hf.last_hidden_state, cx["last_hidden_state"])
    record(f"{name}: features, transformers on the recipe vs cxformer embed (cls, patches, last_hidden_state)",
           [d_cls, d_patch, d_last], max(d_cls, d_patch, d_last) < FEATURE_TOL)
    record(f"{name}: features, transformers on AutoImageProcessor alone vs cxformer embed (last_hidden_state)",
           max_diff(hf_raw.last_hidden_state, cx["last_hidden_state"]), True, "expected to differ")
    return cfg


def predictions(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    classes = [k[len("prob_"):] for k in rows[0] if k.startswith("prob_")]
    return [r["image_id"] for r in rows], classes, np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])


def check_classifier(root, work, name, backbone, data, extra):
    probe = os.path.join(work, f"{name}-probe")
    cli(root, "finetune", "--config", "phantom", "--root", data, "--weights", backbone, "--out", probe,
        "--epochs", "3", "--bootstrap", "0", "-q", *extra)
    folder = os.path.join(work, f"{name}-export")
    r = cli(root, "export", "--weights", backbone, "--head", os.path.join(probe, "head.safetensors"), "--out", folder)
    ids, classes, ref = predictions(os.path.join(probe, "eval", "predictions.csv"))
    paths = [os.path.join(data, i) for i in ids]
    ns = run_recipe(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    arch = cfg["architectures"][0]
    if arch.endswith("ForImageClassification"):
        model, info = AutoModelForImageClassification.from_pretrained(folder, output_loading_info=True)
        missing = sorted(map(str, [*info["missing_keys"], *info["unexpected_keys"], *info["mismatched_keys"]]))
        record(f"{name}: {type(model).__name__} keys", f"missing/unexpected/mismatched {list(missing)}", not missing)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        record(f"{name}: id2label", labels, labels == classes)
        ns["model"] = model.eval()
        with torch.no_grad():
            logits = model(pixel_values=ns["pixel_values_of"](paths)).logits
        probs = logits.softmax(-1) if model.config.problem_type == "single_label_classification" else logits.sigmoid()
    else:
        # The README's head snippet, as written.
        ns["paths"] = paths
        exec(compile(readme_blocks(folder)[1], f"{folder}/README.md", "exec"), ns)
        probs = ns["probs"]
        hc = json.load(open(os.path.join(folder, "head_config.json")))
        record(f"{name}: head_config.json classes", hc["classes"], hc["classes"] == classes)
    d = max_diff(probs, ref)
    record(f"{name}: {arch} probabilities vs cxformer predictions.csv ({len(ids)} images x {len(classes)} classes)", d, d < PROB_TOL)
    return folder, arch


def check_llava(root, work, data):
    """Check 5: a LLaVA run's export in transformers (see the module docstring)."""
    golden = os.environ.get("CXF_GOLDEN_DIR", os.path.join(os.path.dirname(root), "shared", "fixtures", "golden"))
    tower = os.path.join(work, "llava-tower")
    cli(root, "export", "--arch", "vit_small", "model.depth=2", "model.img_size=112", "--seed", "3", "--out", tower)
    run = os.path.join(work, "llava-run")
    cli(root, "finetune", "--task", "report", "--decoder", "llm", "--lm", os.path.join(golden, "lm", "qwen2"), "--stage", "align",
        "--root", data, "--weights", tower, "--resize", "112", "--crop", "112", "--epochs", "3", "--lr", "0.01",
        "--head-batch-size", "8", "--max-report-tokens", "32", "--bootstrap", "0", "--out", run)
    exp = os.path.join(work, "llava-export")
    cli(root, "export", run, "--format", "llava-hf", "--out", exp)
    cfg = json.load(open(os.path.join(exp, "config.json")))
    model = LlavaForConditionalGeneration.from_pretrained(exp, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(exp)
    proc = AutoProcessor.from_pretrained(exp)
    image_id = tok.convert_tokens_to_ids("<image>")
    record("llava: the export loads (LlavaForConditionalGeneration, tokenizer, processor)",
           f"vocab {cfg['text_config']['vocab_size']}, tokenizer {len(tok)}, <image> {image_id}, {type(proc).__name__}",
           image_id == cfg["image_token_index"] and len(tok) == cfg["text_config"]["vocab_size"] and type(proc).__name__ == "LlavaProcessor")
    paths = sorted(os.path.join(data, "images", f) for f in os.listdir(os.path.join(data, "images")))[:2]
    px = cxformer_pixels(root, exp, paths, os.path.join(work, "llava-pixels.safetensors"))
    per = proc.image_processor.crop_size["height"] // proc.patch_size
    n = per * per + proc.num_additional_image_tokens - (1 if proc.vision_feature_select_strategy == "default" else 0)
    prompt = tok("<image>", add_special_tokens=True)["input_ids"]
    ids = torch.tensor([[t for x in prompt for t in ([x] * n if x == image_id else [x])]] * len(paths))
    with torch.no_grad():
        out = model.generate(pixel_values=px, input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False, num_beams=1)
    theirs = [tok.decode(r[ids.shape[1]:], skip_special_tokens=True).strip() for r in out]
    g = cli(root, "generate", "--model", exp, *paths, "--max-new-tokens", "16")
    ours = [b.split("\n", 1)[1].strip() for b in g.stdout.strip().split("\n\n")]
    record("llava: transformers' greedy reports = cxformer generate's", f"{theirs[0]!r}", theirs == ours, "" if theirs == ours else f"cxformer: {ours!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=REPO, help="cxformer package root (dist/ built)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="cxf-hf-interop-")
    os.makedirs(work, exist_ok=True)
    root = os.path.abspath(a.root)
    images = make_images(os.path.join(work, "images"))

    # Backbones: registers at their own resolution (518, LayerScale 1.0), and no registers at 56 px (the position
    # embedding interpolated to the 518 px input).
    reg = os.path.join(work, "reg")
    cli(root, "export", "--arch", "vit_small", "model.depth=2", "--seed", "1", "--out", reg)
    noreg = os.path.join(work, "noreg")
    cli(root, "export", "--arch", "vit_small", "model.depth=2", "model.img_size=56", "model.num_register_tokens=0",
        "model.layerscale_init=1e-5", "--seed", "2", "--out", noreg)
    check_backbone(root, work, "registers", reg, images)
    check_backbone(root, work, "no-registers", noreg, images)

    data = os.path.join(work, "data")
    cli(root, "synth", "--out", data, "--n", "60", "--size", "128")
    c1, _ = check_classifier(root, work, "linear-noreg", noreg, data, ["--cls-layers", "1"])
    check_classifier(root, work, "linear-reg", reg, data, ["--cls-layers", "1"])
    check_classifier(root, work, "mlp-reg", reg, data, ["--cls-layers", "2", "--hidden", "8"])

    # Re-export of a classification folder: classifier.* carried through, or refused.
    again = os.path.join(work, "re-export")
    cli(root, "export", "--weights", c1, "--out", again)
    s1, s2 = load_file(os.path.join(c1, "model.safetensors")), load_file(os.path.join(again, "model.safetensors"))
    same = s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    record("re-export of a Dinov2ForImageClassification folder keeps every tensor", f"{len(s2)} tensors, classifier.weight {list(s2['classifier.weight'].shape)}", same)
    r = cli(root, "export", "--weights", c1, "--format", "original", "--out", os.path.join(work, "o.safetensors"), expect_ok=False)
    record("--format original of a classification folder refuses", r.stderr.strip().splitlines()[-1], r.returncode == 2 and "classifier" in r.stderr)

    check_llava(root, work, data)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    print(f"\n{len(results['checks']) - len(failed)}/{len(results['checks'])} checks passed (transformers {transformers.__version__}, torch {torch.__version__}); work folder {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
