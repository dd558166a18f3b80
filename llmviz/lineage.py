"""The series' family tree: each model, its year, the one idea it added, and the notebook that builds it.

Years are those of the papers cited in ``shared/facts/facts.md`` (arXiv ids 1706 → 2017, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure


@dataclass(frozen=True)
class Step:
    model: str
    year: int
    idea: str
    notebook: str
    preset: str | None  # a name for llmviz.configs.get_config, when the model has one


LINEAGE: tuple[Step, ...] = (
    Step("Transformer", 2017, "attention replaces recurrence (encoder-decoder)", "01_transformer", "transformer-base"),
    Step("BERT", 2018, "bidirectional encoder, masked-LM pre-training", "02_bert", "bert-base-uncased"),
    Step("GPT-2", 2019, "decoder-only LM, pre-LN; scale gives zero-shot", "03_gpt", "gpt2"),
    Step("GPT-3", 2020, "175B; alternating dense / banded sparse attention", "04_gpt3", "gpt3-175b"),
    Step("InstructGPT", 2022, "RLHF: SFT → reward model → PPO", "05_instructgpt", "instructgpt"),
    Step("Llama", 2023, "RMSNorm pre-norm, SwiGLU, RoPE; open weights", "06_llama", "llama-1-7b"),
    Step("Llama 3", 2024, "GQA everywhere, 128K vocab, RoPE base 500k", "06_llama", "llama-3-8b"),
    Step("DeepSeek-V3", 2024, "MLA latent KV cache, aux-loss-free MoE", "08_deepseek", "deepseek-v3"),
    Step("Qwen3", 2025, "QK-Norm, RoPE base 1M, 128-expert MoE", "07_qwen3", "qwen3-235b-a22b"),
)


def draw_lineage(fig: Figure) -> None:
    """A timeline: one row a model, its year on the x axis, the idea it added written beside it."""
    ax = fig.add_subplot()
    years = [s.year for s in LINEAGE]
    colors = {"encoder": "#0072B2", "decoder": "#D55E00", "encdec": "#009E73"}
    for row, s in enumerate(LINEAGE):
        kind = "encdec" if s.model == "Transformer" else "encoder" if s.model == "BERT" else "decoder"
        y = len(LINEAGE) - 1 - row
        ax.scatter([s.year], [y], s=140, color=colors[kind], zorder=3)
        ax.text(s.year - 0.25, y, s.model, ha="right", va="center", fontsize=12, fontweight="bold")
        ax.text(s.year + 0.25, y, s.idea, ha="left", va="center", fontsize=11)
    ax.plot(years, range(len(LINEAGE) - 1, -1, -1), color="0.8", zorder=1)
    ax.set_xlim(min(years) - 3.2, max(years) + 6.5)
    ax.set_ylim(-0.8, len(LINEAGE) - 0.2)
    ax.set_xticks(range(min(years), max(years) + 1))
    ax.tick_params(labelsize=11)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    handles = [ax.scatter([], [], s=100, color=c, label=l) for l, c in
               (("encoder-decoder", colors["encdec"]), ("encoder only", colors["encoder"]),
                ("decoder only", colors["decoder"]))]
    ax.legend(handles=handles, loc="upper right", fontsize=11, frameon=False)
    ax.set_title("From the 2017 Transformer to Qwen3: one new idea per step", fontsize=14)
