"""Test helper: ``lm_eval`` (its real CLI) with the Hugging Face Hub replaced by a folder.

lm-eval's ``EvaluationTracker`` (``--hf_hub_log_args``) talks to the Hub through ``huggingface_hub.HfApi``
(create_repo, upload_file, upload_folder, list_repo_files), ``hf_hub_url`` and ``DatasetCard.push_to_hub``
(the Hub's card validation endpoint, ``huggingface_hub.repocard.upload_file``).  Those are replaced here:
uploads are copied under ``$FAKE_HUB_DIR/<repo id>/`` and every call is appended to
``$FAKE_HUB_DIR/calls.jsonl``.
Arguments: those of ``lm_eval``.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.repocard

HUB = Path(os.environ["FAKE_HUB_DIR"])


def _record(*call):
    with open(HUB / "calls.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(call) + "\n")


def _target(repo_id, path_in_repo):
    return HUB / repo_id / str(path_in_repo).lstrip("/")


class FakeApi:
    def __init__(self, token=None, **kwargs):
        self.token = token

    def whoami(self, **kwargs):
        return {"name": "me"}

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False, **kwargs):
        _record("create_repo", repo_id, repo_type, private)
        (HUB / repo_id).mkdir(parents=True, exist_ok=True)

    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, repo_type=None, **kwargs):
        _record("upload_file", repo_id, repo_type, str(path_in_repo))
        target = _target(repo_id, path_in_repo)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(path_or_fileobj, (bytes, bytearray)):
            target.write_bytes(path_or_fileobj)
        else:
            shutil.copy(path_or_fileobj, target)

    def upload_folder(self, repo_id, folder_path, path_in_repo=None, repo_type=None, **kwargs):
        _record("upload_folder", repo_id, repo_type, str(path_in_repo))
        shutil.copytree(folder_path, _target(repo_id, path_in_repo or ""), dirs_exist_ok=True)

    def list_repo_files(self, repo_id, repo_type=None, **kwargs):
        root = HUB / repo_id
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def fake_hub_url(repo_id, filename, repo_type=None, **kwargs):
    return str(_target(repo_id, filename))


def fake_card_upload(path_or_fileobj, path_in_repo, repo_id, repo_type=None, **kwargs):
    FakeApi().upload_file(path_or_fileobj, path_in_repo, repo_id, repo_type)


huggingface_hub.HfApi = FakeApi
huggingface_hub.hf_hub_url = fake_hub_url
def fake_card_validation(self, repo_type=None):
    _record("validate_card", repo_type)


huggingface_hub.repocard.upload_file = fake_card_upload
huggingface_hub.repocard.RepoCard.validate = fake_card_validation

if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *sys.argv[1:]]
    sys.exit(cli_evaluate())
