"""Test helper, run under ``accelerate launch``: the ``annotate`` command, but rank 1 is killed half-way through
writing its second shard (SIGKILL after the shard's data is on disk, before its manifest and rename), as a
power cut or an out-of-memory kill would.  Arguments: those of ``python -m lm_eval_latenttts annotate``."""

import os
import signal
import sys

import datasets

from lm_eval_latenttts.cli import main

_save_to_disk = datasets.Dataset.save_to_disk
_saved = []


def _save_then_die_on_the_second_shard(self, path, *args, **kwargs):
    _save_to_disk(self, path, *args, **kwargs)
    _saved.append(path)
    if len(_saved) == 2:
        os.kill(os.getpid(), signal.SIGKILL)


if os.environ.get("RANK") == "1":
    datasets.Dataset.save_to_disk = _save_then_die_on_the_second_shard

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
