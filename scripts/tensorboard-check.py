#!/usr/bin/env python3
"""Reads cxformer run folders with TensorBoard's own event reader and compares them with metrics.jsonl.

An independent check of src/run/tensorboard.ts (issue #14), not part of `npm test`: it needs the `tensorboard`
Python package, which the project does not install. In a test-only environment outside the repository:

    python3 -m venv /tmp/tbvenv && /tmp/tbvenv/bin/pip install tensorboard
    /tmp/tbvenv/bin/python scripts/tensorboard-check.py RUN_FOLDER [RUN_FOLDER ...]

For each run folder (pretraining, `finetune --mode full`, `--mode linear`, `--task segmentation`) it loads the folder
with `tensorboard.backend.event_processing.event_accumulator.EventAccumulator` (every event kept, the default
purge_orphaned_data on, as `tensorboard --logdir` reads it) and checks that:
  - every events file is read without a data-loss error (a file cut in the middle of its last record included: with
    --cut, a copy of the folder whose newest events file lost its last 5 bytes must give the same scalars less the
    last record's);
  - the scalars are exactly the numbers of metrics.jsonl (history.jsonl for the linear probe): one tag per field,
    `<group>/<field>` (nested objects as `<group>/<field>/<key>`), at the line's step (`iteration`, `step` or
    `steps`), float32-rounded, nothing more, nothing less: lines that a killed start wrote after its last checkpoint
    are superseded by the resumed start's SessionLog START, as they are dropped from metrics.jsonl;
  - the resolved settings are there as a text summary `config` (the text plugin's tensor).

Recorded result (tensorboard 2.21.0, protobuf 7.36.2, tensorboard-data-server 0.7.2; 2026-12-07), on four folders
made like the tiny runs of test/train/tensorboard.test.ts: pretraining through the CLI (20 iterations, probes at each
checkpoint) SIGKILLed after iteration 5 and resumed from the checkpoint of iteration 3; full fine-tuning and
segmentation stopped mid-epoch and resumed; a linear probe. All four pass, with --cut too:
    pretrain: OK: 30 tags, 525 points = metrics; 2 events file(s)   (the reader logs "Purging expired events ...
              current step: 4 ... Removing 50 scalars": the killed start's iterations 4 and 5)
    full: OK: 11 tags, 33 points; linear: OK: 7 tags, 28 points; seg: OK: 17 tags, 93 points
`tensorboard --logdir <those runs> --load_fast=true` (the Rust data server) listed the four runs, served
train/total_loss of the pretraining run as 20 points equal to metrics.jsonl (the resumed start's values at 4 and 5),
and rendered each run's `config` text as preformatted text.
"""
import json
import math
import shutil
import struct
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator as ea

GROUPS = {"train", "schedule", "grad", "time", "probe", "val", "progress"}


def metrics_lines(run: Path):
    for name in ("metrics.jsonl", "history.jsonl"):
        f = run / name
        if f.exists():
            return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    raise SystemExit(f"{run}: no metrics.jsonl or history.jsonl")


def step_key(line: dict) -> str:
    for k in ("iteration", "step", "steps"):
        if k in line:
            return k
    raise SystemExit(f"no step field in {line}")


def flat(obj: dict, prefix=""):
    for k, v in obj.items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, (int, float)):
            if math.isfinite(v):
                yield prefix + k, float(v)
        elif isinstance(v, dict):
            yield from flat(v, f"{prefix}{k}/")


def f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def expected(run: Path):
    want = {}
    for line in metrics_lines(run):
        sk = step_key(line)
        step = line[sk]
        for key, v in flat({k: v for k, v in line.items() if k != sk}):
            have = want.setdefault(key, {})
            if step in have and have[step] != f32(v):
                raise SystemExit(f"{run}: {key} at step {step} differs between two lines")
            have[step] = f32(v)
    return want


def load(run: Path):
    acc = ea.EventAccumulator(str(run), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    got = {}
    for tag in acc.Tags()["scalars"]:
        group, key = tag.split("/", 1)
        if group not in GROUPS:
            raise SystemExit(f"{run}: tag {tag} outside the groups {sorted(GROUPS)}")
        pts = acc.Scalars(tag)
        steps = [p.step for p in pts]
        if len(set(steps)) != len(steps):
            raise SystemExit(f"{run}: {tag} has a step twice: {steps}")
        got[key] = {p.step: p.value for p in pts}
    return acc, got


def check(run: Path) -> str:
    want = expected(run)
    acc, got = load(run)
    if set(got) != set(want):
        raise SystemExit(f"{run}: fields differ: only in events {sorted(set(got) - set(want))}, only in metrics {sorted(set(want) - set(got))}")
    for key in want:
        if got[key] != want[key]:
            raise SystemExit(f"{run}: {key} differs:\n  events  {got[key]}\n  metrics {want[key]}")
    texts = acc.Tensors("config") if "config" in acc.Tags()["tensors"] else []
    if not texts:
        raise SystemExit(f"{run}: no config text summary")
    plugin = acc.SummaryMetadata("config").plugin_data.plugin_name
    if plugin != "text":
        raise SystemExit(f"{run}: config has plugin {plugin!r}")
    config = texts[-1].tensor_proto.string_val[0].decode()
    points = sum(len(v) for v in want.values())
    files = sorted(p.name for p in run.glob("events.out.tfevents.*"))
    return f"{run.name}: OK: {len(want)} tags, {points} points = metrics; {len(files)} events file(s); config text {len(config)} chars"


def check_cut(run: Path) -> str:
    """A copy whose newest events file lost its last 5 bytes: the same scalars less those of the last record."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run.name
        copy.mkdir()
        for f in run.glob("events.out.tfevents.*"):
            shutil.copy(f, copy / f.name)
        newest = sorted(copy.glob("events.out.tfevents.*"))[-1]
        data = newest.read_bytes()
        newest.write_bytes(data[:-5])
        _, whole = load(run)
        _, cut = load(copy)
        lost = {(k, s) for k, pts in whole.items() for s in pts} - {(k, s) for k, pts in cut.items() for s in pts}
        extra = {(k, s) for k, pts in cut.items() for s in pts} - {(k, s) for k, pts in whole.items() for s in pts}
        steps = {s for _, s in lost}
        if extra or len(steps) != 1 or not lost:
            raise SystemExit(f"{run}: cut copy: lost {sorted(lost)}, extra {sorted(extra)}")
        for k, pts in cut.items():
            for s, v in pts.items():
                if whole[k][s] != v:
                    raise SystemExit(f"{run}: cut copy: {k} at {s} differs")
        return f"{run.name}: cut OK: the torn last record (step {steps.pop()}, {len(lost)} scalars) skipped, the rest identical"


def main(argv):
    cut = "--cut" in argv
    runs = [Path(a) for a in argv if a != "--cut"]
    if not runs:
        raise SystemExit(__doc__)
    for run in runs:
        print(check(run))
        if cut:
            print(check_cut(run))


if __name__ == "__main__":
    main(sys.argv[1:])
