import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# torch's OpenMP threads spin while they wait for work; beside the suite's background runs (below) two
# processes then fight for 2 cores: the two packed-batch fine-tuning tests took 75 s beside a smoke run,
# 26 s with this.
# Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


# Long end-to-end runs in the background. On 2 cores the suite used ~1.35 of them: most tests are one
# Python thread, while the notebook runs are subprocesses that wait on nothing here. A test module that
# defines `background(tmp: Path) -> dict` (which may only start subprocesses: no torch, no global RNG in
# this process) has it started once collection ends, if any selected test of it reads the job (`background_run`). Each job runs in
# its own thread (one torch thread each), beside each other and the rest of the suite; the module's tests read the job's dict
# through the `background_run` fixture, which waits for it. The asset conversions they share with the
# foreground are serialised by a file lock (`mars_lib.pipeline.assets.exclusive`).
import threading


class _Job:
    def __init__(self, module):
        self.module, self.done, self.result, self.error = module, threading.Event(), None, None


_JOBS: dict[str, _Job] = {}


def _run_job(job, tmp: Path):
    try:
        job.result = job.module.background(tmp)
    except BaseException as e:              # handed to the module's tests
        job.error = e
    finally:
        job.done.set()


def _job_tmp(job, factory) -> Path:
    return factory.mktemp(job.module.__name__.rsplit(".", 1)[-1])


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    new = []
    for item in session.items:
        mod = getattr(item, "module", None)
        if (mod is not None and hasattr(mod, "background") and mod.__name__ not in _JOBS
                and "background_run" in getattr(item, "fixturenames", ())):     # a selected test reads it
            _JOBS[mod.__name__] = job = _Job(mod)
            new.append(job)
    factory = session.config._tmp_path_factory
    # every job's folder made here, before any thread starts: pytest's temporary-folder factory is not
    # thread-safe (started together, the jobs raced to create its base folder and one job lost)
    tmps = [_job_tmp(job, factory) for job in new]
    for job, tmp in zip(new, tmps):          # side by side: the foreground idles while it waits for them
        threading.Thread(target=_run_job, args=(job, tmp), daemon=True, name=f"mars-{job.module.__name__}").start()


@pytest.fixture(scope="module")
def background_run(request, tmp_path_factory):
    job = _JOBS.get(request.module.__name__)
    if job is None:                          # not seen at collection (should not happen): run it here
        job = _JOBS[request.module.__name__] = _Job(request.module)
        _run_job(job, _job_tmp(job, tmp_path_factory))
    job.done.wait()
    if job.error is not None:
        raise job.error
    return job.result
