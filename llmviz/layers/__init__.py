"""Building blocks, one concept a file, named as the papers name them."""
from .attention import Attention, KVCache, causal_mask, repeat_kv
from .ffn import MLP, SwiGLU
from .norm import LayerNorm, RMSNorm, make_norm
from .position import RotaryEmbedding, apply_rope, rope_inv_freq, rotate_half, rotate_every_two, sinusoidal_positions

__all__ = ["Attention", "KVCache", "causal_mask", "repeat_kv", "MLP", "SwiGLU", "LayerNorm", "RMSNorm", "make_norm",
           "RotaryEmbedding", "apply_rope", "rope_inv_freq", "rotate_half", "rotate_every_two", "sinusoidal_positions"]
