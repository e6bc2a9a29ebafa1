#!/usr/bin/env python3
"""A reference `external` evaluator for lineage's tests: the `mlp` family in pure Python.

Usage (the lineage external protocol): external_mlp.py PARAMS.safetensors DATA.safetensors
Prints one JSON line per eval example: {"loss": <cross-entropy>, "correct": <bool>}.
The MLP is the chain of `*.weight` [out, in] / `*.bias` [out] layers in natural name order with
relu in between. Only the standard library is used (safetensors is read by hand).
"""

import json
import math
import re
import struct
import sys
from operator import mul

FORMATS = {"F32": ("f", 4), "U32": ("I", 4), "I64": ("q", 8), "F64": ("d", 8)}


def read_safetensors(path):
    """Returns {name: (shape, flat list of values)}."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    body = raw[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code, size = FORMATS[info["dtype"]]
        start, end = info["data_offsets"]
        values = struct.unpack("<%d%s" % ((end - start) // size, code), body[start:end])
        tensors[name] = (info["shape"], list(values))
    return tensors


def natural_key(name):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def rows(shape, values):
    n_out, n_in = shape
    return [values[o * n_in : (o + 1) * n_in] for o in range(n_out)]


def main():
    params = read_safetensors(sys.argv[1])
    data = read_safetensors(sys.argv[2])
    prefixes = sorted({n.rsplit(".", 1)[0] for n in params}, key=natural_key)
    layers = []
    for p in prefixes:
        shape, w = params[p + ".weight"]
        bias = params[p + ".bias"][1] if p + ".bias" in params else [0.0] * shape[0]
        layers.append((rows(shape, w), bias))
    (n, d), x = data["inputs"]
    labels = data["labels"][1]
    out = []
    for i in range(n):
        h = x[i * d : (i + 1) * d]
        for k, (w, b) in enumerate(layers):
            h = [sum(map(mul, row, h)) + bk for row, bk in zip(w, b)]
            if k + 1 < len(layers):
                h = [v if v > 0.0 else 0.0 for v in h]
        top = max(h)
        lse = top + math.log(sum(math.exp(v - top) for v in h))
        label = labels[i]
        out.append(json.dumps({"loss": lse - h[label], "correct": h.index(top) == label}))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
