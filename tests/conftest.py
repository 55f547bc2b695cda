import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the tests use tiny models: intra-op threads only add synchronisation (and stall badly on a busy 2-core box)
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (only present in the development checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """One tiny random checkpoint per backbone, in the released layout."""
    from tiny_models import make_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    return {kind: make_checkpoint(root / kind, kind) for kind in ("coconut", "codi", "colar")}
