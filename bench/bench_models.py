"""Speed of llmviz's models against Hugging Face transformers on the same weights (CPU, fp32).

Forward: Llama- and Qwen3-shaped models (hidden 512, 6 layers, batch 4, 256 tokens), runs of ours and HF's
alternating, median of the per-pair ratios ours / HF (below 1.0 = ours faster). Generation: 128 greedy tokens
with the KV cache, ours against HF's ``generate``. Both use SDPA attention and 2 threads.

    python bench/bench_models.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llmviz.generate import generate  # noqa: E402
from llmviz.hf import load_hf  # noqa: E402

SHAPES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2,
                   intermediate_size=1536, vocab_size=32_000, max_position_embeddings=1024, rope_theta=500_000.0)),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4, head_dim=128,
                   intermediate_size=1536, vocab_size=32_000, max_position_embeddings=1024,
                   rope_theta=1_000_000.0, tie_word_embeddings=True)),
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ratio(ours, theirs, repeats: int) -> tuple[float, float, float]:
    ours(), theirs()  # warm-up
    pairs = [(timed(ours), timed(theirs)) for _ in range(repeats)]
    return (statistics.median(a / b for a, b in pairs), statistics.median(a for a, _ in pairs),
            statistics.median(b for _, b in pairs))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads")
    for name, (config_cls, model_cls, kwargs) in SHAPES.items():
        hf = model_cls(config_cls(**kwargs)).eval()
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            ours = load_hf(d)
        ids = torch.randint(0, kwargs["vocab_size"], (4, 256))
        r, a, b = median_ratio(lambda: ours(ids), lambda: hf(ids).logits, args.repeats)
        print(f"{name:6s} forward  B=4 T=256 : ours {a * 1e3:7.1f} ms   HF {b * 1e3:7.1f} ms   ratio {r:.2f}")
        prompt = ids[:1, :16]
        r, a, b = median_ratio(lambda: generate(ours, prompt, 128),
                               lambda: hf.generate(prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False,
                                                   attention_mask=torch.ones_like(prompt), pad_token_id=0),
                               max(3, args.repeats // 2))
        print(f"{name:6s} generate 128 tokens : ours {a * 1e3:7.1f} ms   HF {b * 1e3:7.1f} ms   ratio {r:.2f}")


if __name__ == "__main__":
    main()
