"""Upload a saved checkpoint folder (backbone or LatentRM) to the Hugging Face Hub.

``save_pretrained`` has written everything a Hub repo needs (weights, config
with ``auto_map``, modeling code, tokenizer, ``README.md`` model card and, after
``export-results``, ``.eval_results/``); this uploads the folder as it is.
``model.push_to_hub`` of transformers is not used: it replaces the card with
the remote one or a bare template.  Training checkpoints (``checkpoints/``)
stay local.
"""

from __future__ import annotations

from pathlib import Path

RUN_LOCK_FILE = ".run.lock"  # a training run's lock in its output folder (training.run_record holds it)
UPLOAD_IGNORE = ["checkpoints/*", ".tmp-*", "**/.tmp-*", RUN_LOCK_FILE]


def push_to_hub(folder, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload with lm-eval-latenttts") -> str:
    """Create ``repo_id`` (if needed) and upload ``folder``; returns the commit URL."""
    import huggingface_hub

    from lm_eval_latenttts.publishing.identity import check_repo_id

    check_repo_id(repo_id, "the repo id")
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: it is not a saved checkpoint folder to upload.")
    api = huggingface_hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                             ignore_patterns=UPLOAD_IGNORE)


__all__ = ["RUN_LOCK_FILE", "UPLOAD_IGNORE", "push_to_hub"]
