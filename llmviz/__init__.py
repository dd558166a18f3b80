"""llmviz: mainstream LLMs built from small, tested parts, for interactive teaching notebooks."""
from .configs import ModelConfig, get_config, list_configs
from .models import build_model

__version__ = "0.1.0"
__all__ = ["ModelConfig", "get_config", "list_configs", "build_model", "__version__"]
