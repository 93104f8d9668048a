import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
HH_SAMPLE = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-sample" / "harmless-base-test-first400.jsonl.gz"


@pytest.fixture
def hh_sample():
    if not HH_SAMPLE.exists():
        pytest.skip(f"shared HH-RLHF sample not present at {HH_SAMPLE}")
    return HH_SAMPLE
