"""What a saved latent checkpoint carries for the Hub: ``auto_map`` entries and a model card.

``save_pretrained`` of a latent backbone or a LatentRM writes, besides the
weights, config and modeling code (transformers' ``register_for_auto_class``):

* an ``auto_map`` naming the class for every Auto class in ``auto_classes``
  (backbones: ``AutoModelForCausalLM`` and ``AutoModel``; RMs: ``AutoModel`` and
  ``AutoModelForTokenClassification``), so ``trust_remote_code=True`` works in
  a Python without this package through either Auto class;
* a model card ``README.md`` with the Hub's YAML metadata (``library_name``,
  ``pipeline_tag``, ``tags``, and ``base_model`` / ``datasets`` / ``license``
  when known), unless the folder already has one (it may hold a training
  record or exported results) or ``model_card=`` passes one to write.

Only transformers and huggingface_hub (a transformers dependency) are
imported: this file is copied next to saved checkpoints for
``trust_remote_code`` loading.
"""

from __future__ import annotations

import os

CARD_FILE = "README.md"
PROJECT_TAGS = ("latent-reasoning", "test-time-scaling", "lm-eval-latenttts")


def card_metadata(*, pipeline_tag: str, tags=(), base_model=None, datasets=None, license=None, **extra):
    """``huggingface_hub.ModelCardData`` following Hub conventions; empty fields are left out."""
    from huggingface_hub import ModelCardData

    fields = {"library_name": "transformers", "pipeline_tag": pipeline_tag,
              "tags": list(dict.fromkeys([*PROJECT_TAGS, *tags])), "base_model": base_model,
              "datasets": list(datasets) if datasets else None, "license": license, **extra}
    return ModelCardData(**{k: v for k, v in fields.items() if v not in (None, [], "")})


def render_card(data, body: str) -> str:
    """Model card text: ``---`` YAML metadata ``---`` then the markdown ``body``."""
    return f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n"


class LatentHubMixin:
    """``save_pretrained`` with the ``auto_map`` of every class in ``auto_classes`` and a model card."""

    auto_classes: tuple = ()  # Auto classes that should load this class with trust_remote_code
    card_pipeline_tag = "text-generation"

    def save_pretrained(self, save_directory, *args, model_card: str | None = None, **kwargs):
        """As transformers'; also maps ``auto_classes`` in ``auto_map`` and writes ``README.md`` (see module doc).

        ``model_card``: the card text to write (replacing any); by default a generic card is written
        only into a folder without one.
        """
        if getattr(self, "_auto_class", None) is not None:
            name = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for key in self.auto_classes:
                auto_map.setdefault(key, name)
            self.config.auto_map = auto_map
        result = super().save_pretrained(save_directory, *args, **kwargs)
        path = os.path.join(str(save_directory), CARD_FILE)
        if kwargs.get("is_main_process", True) and (model_card is not None or not os.path.exists(path)):
            with open(path, "w", encoding="utf-8") as f:
                f.write(model_card if model_card is not None else self.model_card())
        return result

    def model_card(self, repo_id: str | None = None, *, base_model=None, datasets=None, license=None) -> str:
        """A generic model card of this checkpoint (metadata, what it is, how to load it)."""
        kind = getattr(self, "latent_kind", None) or "latent-rm"
        data = card_metadata(pipeline_tag=self.card_pipeline_tag, tags=[kind], base_model=base_model,
                             datasets=datasets, license=license)
        name = repo_id or "path/to/this/folder"
        auto = self.auto_classes[0] if self.auto_classes else "AutoModel"
        body = "\n".join([
            f"# {type(self).__name__} ({kind})",
            "",
            self.card_description(),
            "",
            "## Usage",
            "",
            "```python",
            "from hf_modeling import AutoLatentModel  # pip install lm-eval-latenttts",
            f'model = AutoLatentModel.from_pretrained("{name}")',
            "# or, without that package:",
            f'# transformers.{auto}.from_pretrained("{name}", trust_remote_code=True)',
            "```",
            "",
            "Evaluate it with test-time scaling: `lm_eval --model latent_tts --model_args "
            f"pretrained={name} --tasks latent_gsm8k` (lm-eval-latenttts).",
        ])
        return render_card(data, body)

    def card_description(self) -> str:
        """The card's paragraph saying what the model is (classes refine it)."""
        return ("A latent reasoning model (Parallel Test-Time Scaling for Latent Reasoning Models, "
                "arXiv 2510.07745).")


__all__ = ["CARD_FILE", "LatentHubMixin", "PROJECT_TAGS", "card_metadata", "render_card"]
