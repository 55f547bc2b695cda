"""Configurations of the LatentRM (latent trajectory reward model).

A LatentRM is a GPT-2 or Llama with a one-output token-classification head.
The released RM (``ModalityDance/latent-tts-rm``) wrote a plain ``gpt2``
config.json with ``architectures: ["COCONUTGPT2ForTokenClassification"]`` and
``num_labels = 1``; ``hf_modeling.auto`` converts it into
``LatentRMGPT2Config``.  Only transformers is imported: this file is copied
next to saved checkpoints for ``trust_remote_code`` loading.
"""

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config, LlamaConfig

from .configuration_latent import LatentTokenIds


class _OneLabel:
    """A LatentRM emits one score per position: one label unless the checkpoint says otherwise."""

    def __post_init__(self, **kwargs):
        if "num_labels" not in kwargs and "id2label" not in kwargs and self.id2label is None:
            kwargs["num_labels"] = 1
        super().__post_init__(**kwargs)


@strict
class LatentRMGPT2Config(_OneLabel, GPT2Config, LatentTokenIds):
    """GPT-2 LatentRM; the latent token ids are checked against the backbone's when set."""

    model_type = "latent_rm_gpt2"
    # AutoLatentModel: ids missing from config.json and tokenizer are not an error (checked at scoring time if set)
    required_latent_ids = ()


@strict
class LatentRMLlamaConfig(_OneLabel, LlamaConfig, LatentTokenIds):
    """Llama LatentRM (for CoLaR-style backbones).

    Args:
        end_marker_id (`int`, *optional*): the backbone's end marker ``###``.
    """

    model_type = "latent_rm_llama"
    required_latent_ids = ()

    end_marker_id: int | None = None


__all__ = ["LatentRMGPT2Config", "LatentRMLlamaConfig"]
