"""PyTorch baseline for `cargo bench --bench transformer_path`: the same path evaluations in
transformers, on the same weights and tokens, timed on this machine in the same run.

Usage: python3 transformer_pytorch.py THREADS, then one JSON request per line on stdin, one JSON
reply per line on stdout:

- {"op": "setup", "family": F, "config": {...}, "a": PATH, "b": PATH, "data": PATH}: builds the
  model (`bert`: `BertForSequenceClassification`, cross-entropy per sequence; `gpt_neox`:
  `GPTNeoXForCausalLM`, `olmo2`: `Olmo2ForCausalLM`, cross-entropy per next token) and loads the two checkpoints and the eval
  tokens (`input_ids`, and `labels` for a classifier) from safetensors files written by the bench,
  onto `device` (`cpu`, `cuda` or `cuda:N`), with the `attention_mask` when the file has one (right
  padding: the columns that are padding in every sequence are cut off, as `DataCollatorWithPadding`
  pads a batch to its longest sequence; a language model scores only the tokens the mask keeps).
  Replies {"torch": version, "checkpoint_bytes": n}.
- {"op": "path", "alphas": [...], "blend": B}: blends theta = (1 - a) A + a B at each alpha, as
  lineage does, and scores all sequences in one batch under `torch.no_grad()`. `B` is how:
  `state_dict` (the default; the common recipe: a new state dict `{k: (1 - a) * A[k] + a * B[k]}`
  loaded with `load_state_dict`) or `in_place` (`torch.lerp(A[k], B[k], a, out=parameter)`: no
  temporaries, the fastest blend PyTorch offers). Replies {"seconds": s, "losses":
  [mean loss per alpha], "peak_rss": bytes}, the peak resident memory of this process during the
  path (the kernel's high-water mark, reset before it), or on a GPU its peak allocated memory.
- {"op": "matmul", "size": n, "repeats": r, "device": D}: times an n x n x n f32 matmul on D (after
  one warm-up) and replies {"seconds": best of r}, the GEMM speed PyTorch reaches in this run.
- {"op": "quit"}.
"""

import json
import resource
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
)

FAMILIES = {
    "bert": (BertConfig, BertForSequenceClassification),
    "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM),
    "olmo2": (Olmo2Config, Olmo2ForCausalLM),
}


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter of this process (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss():
    """Peak resident memory in bytes since the last reset (VmHWM)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def renamed(state):
    """The checkpoint's names as this transformers version has them: transformers 5 calls
    GPT-NeoX's output layer `lm_head` (`embed_out` in the checkpoints lineage reads)."""
    if "embed_out.weight" in state and "lm_head.weight" in GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)).state_dict():
        state["lm_head.weight"] = state.pop("embed_out.weight")
    return state


class Case:
    def __init__(self, request):
        self.family = request["family"]
        self.device = torch.device(request.get("device", "cpu"))
        config_class, model_class = FAMILIES[self.family]
        self.model = model_class(config_class(**request["config"])).eval().to(self.device)
        self.a = renamed(load_file(request["a"], device=str(self.device)))
        self.b = renamed(load_file(request["b"], device=str(self.device)))
        own = self.model.state_dict()
        missing = [k for k in own if k not in self.a and own[k].is_floating_point()]
        unexpected = [k for k in self.a if k not in own]
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        data = load_file(request["data"], device=str(self.device))
        ids = data["input_ids"].long()
        mask = data["attention_mask"].long() if "attention_mask" in data else torch.ones_like(ids)
        longest = int(mask.sum(dim=0).nonzero().max()) + 1 if mask.any() else 1
        self.ids, self.mask = ids[:, :longest], mask[:, :longest]
        self.labels = data["labels"].long() if "labels" in data else None
        self.checkpoint_bytes = sum(t.numel() * t.element_size() for t in self.a.values())
        # The model's own tensors (sharing the parameters' storage), the targets of `in_place`.
        self.own = own

    def losses(self, logits):
        if self.family == "bert":
            return F.cross_entropy(logits, self.labels, reduction="none")
        vocab = logits.shape[-1]
        targets = self.ids[:, 1:].masked_fill(self.mask[:, 1:] == 0, -100).reshape(-1)
        losses = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), targets, reduction="none")
        return losses[targets != -100]

    def blend(self, alpha, how):
        if how == "in_place":
            with torch.no_grad():
                for k in self.a:
                    torch.lerp(self.a[k], self.b[k], alpha, out=self.own[k])
        elif how == "state_dict":
            wa, wb = torch.tensor(1.0 - alpha), torch.tensor(alpha)
            self.model.load_state_dict({k: wa * self.a[k] + wb * self.b[k] for k in self.a}, strict=False)
        else:
            raise ValueError(f"unknown blend {how!r}")

    def path(self, alphas, how):
        means = []
        for alpha in alphas:
            self.blend(alpha, how)
            with torch.no_grad():
                logits = self.model(input_ids=self.ids, attention_mask=self.mask).logits
                means.append(float(self.losses(logits).double().mean()))
        return means

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self):
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self):
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return peak_rss()


def matmul_seconds(size, repeats, device):
    """Best time of a `size`^3 f32 matmul on `device`, after one warm-up."""
    x = torch.ones(size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for repeat in range(repeats + 1):
        sync()
        start = time.perf_counter()
        torch.matmul(x, x)
        sync()
        if repeat > 0:
            best = min(best, time.perf_counter() - start)
    return best


def main():
    torch.set_num_threads(int(sys.argv[1]))
    case = None
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "setup":
            case = None
            case = Case(request)
            reply = {"torch": torch.__version__, "checkpoint_bytes": case.checkpoint_bytes}
        elif request["op"] == "matmul":
            reply = {"seconds": matmul_seconds(request["size"], request["repeats"], torch.device(request["device"]))}
        elif request["op"] == "path":
            case.reset_peak()
            case.synchronize()
            start = time.perf_counter()
            losses = case.path(request["alphas"], request.get("blend", "state_dict"))
            case.synchronize()
            reply = {"seconds": time.perf_counter() - start, "losses": losses, "peak_rss": case.peak()}
        else:
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
