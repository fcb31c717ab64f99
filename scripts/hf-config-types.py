#!/usr/bin/env python3
"""Writes test/fixtures/hf-config-types.json: the JSON types transformers' config classes declare for the fields
cxformer writes into config.json (Dinov2Config, Dinov2WithRegistersConfig, with PreTrainedConfig's fields).

transformers 5.x configs are strict dataclasses (huggingface_hub `@strict`): a JSON integer for a `float` field
(`"layerscale_value": 1`) or a float for an `int` field (`"mlp_ratio": 4.0`) is refused when loading.
test/unit/hf-export.test.ts checks every field of the config.json cxformer writes against this file.

Usage (a python with transformers, e.g. /work/refvenv/bin/python, transformers 5.25):
    python scripts/hf-config-types.py > test/fixtures/hf-config-types.json
"""
import dataclasses
import json
import sys
import types
import typing

import torch
import transformers
from transformers import Dinov2Config, Dinov2WithRegistersConfig


def kinds(tp):
    """JSON kinds a value of annotation `tp` may have: integer, float, boolean, string, array, object, null."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out = []
        for a in typing.get_args(tp):
            out += [k for k in kinds(a) if k not in out]
        return out
    if origin is typing.Literal:
        return ["string"]
    if tp is type(None):
        return ["null"]
    if tp is bool:
        return ["boolean"]
    if tp is int:
        return ["integer"]
    if tp is float:
        return ["float"]
    if tp is str:
        return ["string"]
    if origin in (list, tuple) or tp in (list, tuple):
        return ["array"]
    if origin is dict or tp is dict:
        return ["object"]
    return ["string"]  # torch.dtype and other objects: written as their name


def annotation(tp):
    """A string annotation (PreTrainedConfig uses `from __future__ import annotations`) evaluated to a type."""
    return eval(tp, {**vars(typing), "torch": torch}) if isinstance(tp, str) else tp


def fields(cls):
    out = {}
    for f in dataclasses.fields(cls):
        name = f.name.lstrip("_") if f.name in ("_out_features", "_out_indices") else f.name
        declared = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None) if isinstance(f.type, type) else str(f.type)
        out[name] = {"declared": declared.replace("typing.", ""), "json": kinds(annotation(f.type))}
    return out


# Keys that are not dataclass fields but that the classes accept as keyword arguments.
EXTRA = {
    "torch_dtype": {"json": ["string"], "note": "PreTrainedConfig.__post_init__ pops it into `dtype` (backward compatibility)"},
    "stage_names": {"json": ["array"], "note": "recomputed by Dinov2Config.__post_init__ from num_hidden_layers"},
    "num_labels": {"json": ["integer"], "note": "PreTrainedConfig.__post_init__ reads it from kwargs when id2label is absent"},
}

doc = {
    "generated_by": "scripts/hf-config-types.py",
    "transformers": transformers.__version__,
    "classes": {
        cls.__name__: {"model_type": cls.model_type, "fields": fields(cls), "accepted_extra": EXTRA}
        for cls in (Dinov2Config, Dinov2WithRegistersConfig)
    },
}
json.dump(doc, sys.stdout, indent=2, sort_keys=True)
sys.stdout.write("\n")
