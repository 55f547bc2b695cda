"""Transformers-native latent reasoning models (COCONUT, CODI, CoLaR) and their stochastic ``generate``.

Importing this package registers the configs and models with the transformers
Auto classes, and marks them for ``auto_map`` so that a saved checkpoint
carries its own modeling code (``trust_remote_code=True`` works without this
package).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification

from .auto import AutoLatentModel, load_latent_tokenizer, register_architecture, resolve_checkpoint
from .configuration_latent import CodiConfig, CoconutConfig, ColarConfig
from .generation_config import LatentGenerationConfig
from .latent_generation import PromptTooLongError
from .latent_sampling import LatentSampler
from .latent_state import LatentGenerateOutput, LatentState
from .loading import CheckpointLoadError
from .modeling_latent import CODIGPT2, COCONUTGPT2, ColarLlama
from .configuration_latent_rm import LatentRMGPT2Config, LatentRMLlamaConfig
from .modeling_latent_rm import COCONUTGPT2ForTokenClassification, LatentRMLlamaForTokenClassification, RMScores, RMState


def _register(config_class, model_class, auto_class):
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    auto_class.register(config_class, model_class, exist_ok=True)
    config_class.register_for_auto_class()
    model_class.register_for_auto_class(auto_class.__name__)


# backbones: AutoModelForCausalLM and AutoModel (save_pretrained maps both in auto_map)
for _config, _model in ((CoconutConfig, COCONUTGPT2), (CodiConfig, CODIGPT2), (ColarConfig, ColarLlama)):
    AutoModel.register(_config, _model, exist_ok=True)
    _register(_config, _model, AutoModelForCausalLM)

# LatentRM: AutoModel and AutoModelForTokenClassification (save_pretrained maps both in auto_map)
for _config, _model in (
    (LatentRMGPT2Config, COCONUTGPT2ForTokenClassification),
    (LatentRMLlamaConfig, LatentRMLlamaForTokenClassification),
):
    AutoModel.register(_config, _model, exist_ok=True)
    _register(_config, _model, AutoModelForTokenClassification)
    register_architecture(_model.__name__, _config, _model)

__all__ = [
    "AutoLatentModel",
    "CheckpointLoadError",
    "load_latent_tokenizer",
    "register_architecture",
    "resolve_checkpoint",
    "CoconutConfig",
    "CodiConfig",
    "ColarConfig",
    "COCONUTGPT2",
    "CODIGPT2",
    "ColarLlama",
    "LatentGenerateOutput",
    "LatentGenerationConfig",
    "LatentSampler",
    "LatentState",
    "PromptTooLongError",
    "LatentRMGPT2Config",
    "LatentRMLlamaConfig",
    "COCONUTGPT2ForTokenClassification",
    "LatentRMLlamaForTokenClassification",
    "RMScores",
    "RMState",
]
