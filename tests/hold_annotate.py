"""Test helper: the ``annotate`` command, paused before it writes its first shard (as a long run would be, mid-way)
until the file named by ``$HOLD_GO`` exists; it creates ``$HOLD_STARTED`` when it pauses.  Arguments: those of
``python -m lm_eval_latenttts annotate``."""

import os
import sys
import time
from pathlib import Path

from lm_eval_latenttts.cli import main
from lm_eval_latenttts.training import annotation_store

_write_shard = annotation_store.write_shard


def _pause_then_write(*args, **kwargs):
    Path(os.environ["HOLD_STARTED"]).touch()
    deadline = time.time() + 300
    while not Path(os.environ["HOLD_GO"]).exists() and time.time() < deadline:
        time.sleep(0.05)
    return _write_shard(*args, **kwargs)


annotation_store.write_shard = _pause_then_write

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
