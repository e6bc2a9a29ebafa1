"""PyTorch baseline for `cargo bench --bench transformer_path`: the same path evaluation in
transformers, timed on this machine in the same run.

Usage: python3 transformer_pytorch.py FAMILY CONFIG_JSON SEQUENCES LENGTH ALPHAS THREADS REPEATS
Prints one JSON line: {"best": seconds, "median": seconds, "torch": version}.

FAMILY `bert` is `BertForSequenceClassification` (cross-entropy per sequence), `gpt_neox`
`GPTNeoXForCausalLM` (cross-entropy per next token), with the configuration given (random weights:
the cost does not depend on them). Two parameter sets A and B are blended at each interior alpha
(theta = (1-a) A + a B, as lineage does) and the blended model scores all sequences in one batch
under `torch.no_grad()`.
"""

import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification, GPTNeoXConfig, GPTNeoXForCausalLM

FAMILIES = {
    "bert": (BertConfig, BertForSequenceClassification),
    "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM),
}


def main():
    family, config_json, sequences, length, alphas, threads, repeats = sys.argv[1:8]
    sequences, length, alphas = int(sequences), int(length), int(alphas)
    threads, repeats = int(threads), int(repeats)
    torch.set_num_threads(threads)
    config_class, model_class = FAMILIES[family]
    config = config_class(**json.loads(config_json))
    torch.manual_seed(0)
    a = model_class(config).eval()
    b = model_class(config).eval()
    sa, sb = a.state_dict(), b.state_dict()
    model = model_class(config).eval()
    ids = torch.randint(0, config.vocab_size, (sequences, length))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 4, (sequences,))

    def losses(logits):
        if family == "bert":
            return F.cross_entropy(logits, labels, reduction="none")
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    interior = [i / (alphas - 1) for i in range(1, alphas - 1)]

    def path():
        total = 0.0
        for alpha in interior:
            wa, wb = torch.tensor(1.0 - alpha), torch.tensor(alpha)
            model.load_state_dict({k: wa * sa[k] + wb * sb[k] if sa[k].is_floating_point() else sa[k] for k in sa})
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits
                total += float(losses(logits).mean())
        return total

    path()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        path()
        times.append(time.perf_counter() - start)
    print(json.dumps({"best": min(times), "median": statistics.median(times), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
