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


# Peak memory per test (issue 19): with MARS_TEST_RSS_LOG=path, after every test append its id, the
# pytest process's peak RSS so far and the largest finished child process's (notebook kernels, launched
# workers), in MB. Both are high-water marks: the test where a column first jumps is the one that set it.
_RSS_LOG = os.environ.get("MARS_TEST_RSS_LOG")


if _RSS_LOG:
    import resource

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(item, nextitem):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        with open(_RSS_LOG, "a") as f:
            f.write(f"{item.nodeid}\t{own}\t{kids}\n")
