"""One file a family, each reading top-down like the paper's architecture figure."""
from torch import nn

from .._checks import check_config
from ..configs import ModelConfig
from .bert import Bert
from .deepseek import DeepSeek
from .gpt import GPT1, GPT2
from .llama import Llama
from .qwen3 import Qwen3
from .qwen3_moe import Qwen3Moe
from .transformer import Transformer

# one model class per ModelConfig.arch (tests/test_configs.py checks that every arch has one)
MODELS: dict[str, type[nn.Module]] = {"transformer": Transformer, "bert": Bert, "gpt": GPT1, "gpt2": GPT2,
                                      "llama": Llama, "qwen3": Qwen3, "qwen3_moe": Qwen3Moe, "deepseek": DeepSeek}


def build_model(cfg: ModelConfig) -> nn.Module:
    """A randomly initialised model for ``cfg`` (in train mode, like any new ``nn.Module``)."""
    check_config(cfg)
    return MODELS[cfg.arch](cfg)


__all__ = ["Transformer", "Bert", "GPT1", "GPT2", "Llama", "Qwen3", "Qwen3Moe", "DeepSeek", "MODELS", "build_model"]
