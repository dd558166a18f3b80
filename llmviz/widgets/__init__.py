"""Interactive explorers, each an ipywidgets widget built on :class:`FigureWidget` (design.md §5).

* :func:`sparse_attention_explorer`: sparse / structured attention masks, their cost and multi-layer reach.
* :func:`rope_explorer`: rotary position embeddings: rotation, wavelengths, long-range decay, layouts, scaling.
* :func:`gqa_explorer`: which query heads share which KV head, and the KV-cache it saves (MHA/GQA/MQA/MLA).
* :func:`moe_router_explorer`: a real router trained live; expert load under each balancing method.
* :func:`attention_viewer`: layers × heads attention maps of a model's forward pass, with token labels.
* :func:`sampling_explorer`: temperature, top-k and top-p over a model's next-token distribution.
* :func:`comparison_explorer`: up to six models side by side: memory, accelerators needed, decode speed (roofline).
"""
from .compare import comparison_explorer
from .figure import FigureWidget, figure_png
from .gqa import gqa_explorer
from .moe import moe_router_explorer
from .rope import rope_explorer
from .sampling import sampling_explorer
from .sparse import sparse_attention_explorer
from .viewer import attention_viewer

__all__ = ["FigureWidget", "figure_png", "sparse_attention_explorer", "rope_explorer", "gqa_explorer",
           "moe_router_explorer", "attention_viewer", "sampling_explorer", "comparison_explorer"]
