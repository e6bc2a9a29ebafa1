"""PyTorch baseline for `cargo bench --bench cnn_path`: the same path evaluation in PyTorch, timed
on this machine in the same run.

Usage: python3 cnn_pytorch.py A.safetensors B.safetensors EVAL.safetensors CONFIG.json MODE COPIES
       ALPHAS RESET_EXAMPLES RESET_BATCH THREADS REPEATS
Prints one JSON line: {"best": seconds, "median": seconds, "worst": seconds, "torch": version}.

The ResNet-20 of `tests/fixtures/cnn` (its `CifarResNet` at the width of CONFIG.json, float16
weights upcast) is blended at each
interior alpha (theta = (1-a) A + a B, as lineage does); with MODE `reset` its BatchNorm statistics
are recomputed as the fixture does (`reset_statistics`); the model then scores the eval images
(repeated COPIES times) in batches of 128 under `torch.no_grad()`.
"""

import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/fixtures/cnn"))
import make_fixture  # noqa: E402  (the fixture's model and reset procedure)


def main():
    path_a, path_b, path_eval, path_config, mode = sys.argv[1:6]
    copies, alphas, reset_examples, reset_batch, threads, repeats = map(int, sys.argv[6:12])
    with open(path_config) as f:
        config = json.load(f)
    torch.set_num_threads(threads)
    make_fixture.RESET_EXAMPLES, make_fixture.RESET_BATCH = reset_examples, reset_batch
    sa, sb = (make_fixture.upcast(load_file(p)) for p in (path_a, path_b))
    data = load_file(path_eval)
    x = data["inputs"].repeat(copies, 1, 1, 1).float()
    y = data["labels"].repeat(copies)
    model = make_fixture.CifarResNet(config["depth"], config["width"]).eval()
    interior = [i / (alphas - 1) for i in range(1, alphas - 1)]

    def path():
        total = 0.0
        for alpha in interior:
            model.load_state_dict(make_fixture.blend(sa, sb, alpha))
            if mode == "reset":
                make_fixture.reset_statistics(model, x)
            with torch.no_grad():
                for i in range(0, len(x), 128):
                    total += float(F.cross_entropy(model(x[i : i + 128]), y[i : i + 128], reduction="sum"))
        return total

    path()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        path()
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {"best": min(times), "median": statistics.median(times), "worst": max(times), "torch": torch.__version__}
        )
    )


if __name__ == "__main__":
    main()
