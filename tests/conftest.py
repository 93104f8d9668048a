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
# this process) has it started once collection ends, if a selected test of it reads the job (through the
# `background_run` fixture, which waits for it). The jobs run in threads (one torch thread per
# subprocess), at most MARS_TEST_JOBS (default 2) at a time, the longest first (a module's
# `BACKGROUND_MINUTES`, as measured); the tests that read a job run last, so the foreground does all the
# rest of the suite meanwhile. With all five started at once a notebook kernel did not answer within
# papermill's 60 s. The asset conversions they share with the foreground are serialised by a file lock
# (`mars_lib.pipeline.assets.exclusive`).
import threading
import time
from collections import deque


class _Job:
    def __init__(self, module):
        self.module, self.done, self.result, self.error, self.seconds = module, threading.Event(), None, None, None


_JOBS: dict[str, _Job] = {}


def _run_job(job, tmp: Path):
    t0 = time.perf_counter()
    try:
        job.result = job.module.background(tmp)
    except BaseException as e:              # handed to the module's tests
        job.error = e
    finally:
        job.seconds = time.perf_counter() - t0
        job.done.set()


def _worker(queue: deque):
    while True:
        try:
            job, tmp = queue.popleft()          # atomic: each job is taken by one worker
        except IndexError:
            return
        _run_job(job, tmp)


def _uses_job(item) -> bool:
    mod = getattr(item, "module", None)
    return mod is not None and hasattr(mod, "background") and "background_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """The tests that wait for a background job last (stable: otherwise in collection order)."""
    items.sort(key=_uses_job)


def _job_tmp(job, factory) -> Path:
    return factory.mktemp(job.module.__name__.rsplit(".", 1)[-1])


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    new = []
    for item in session.items:
        if _uses_job(item) and item.module.__name__ not in _JOBS:      # a selected test reads it
            _JOBS[item.module.__name__] = job = _Job(item.module)
            new.append(job)
    new.sort(key=lambda job: -getattr(job.module, "BACKGROUND_MINUTES", 1))
    factory = session.config._tmp_path_factory
    # every job's folder made here, before any thread starts: pytest's temporary-folder factory is not
    # thread-safe (started together, the jobs raced to create its base folder and one job lost)
    queue = deque((job, _job_tmp(job, factory)) for job in new)
    for i in range(min(len(new), int(os.environ.get("MARS_TEST_JOBS", "2")))):
        threading.Thread(target=_worker, args=(queue,), daemon=True, name=f"mars-background-{i}").start()


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


def pytest_terminal_summary(terminalreporter):
    """How long each background job took (what BACKGROUND_MINUTES should say)."""
    done = [j for j in _JOBS.values() if j.seconds is not None]
    if done:
        terminalreporter.write_line("background jobs: " + ", ".join(
            f"{j.module.__name__} {j.seconds:.0f} s{' (failed)' if j.error else ''}" for j in done))
        stale = {j.module.__name__: j.result["seed_new_rows"] for j in done
                 if isinstance(j.result, dict) and j.result.get("seed_new_rows")}
        if stale:                            # tests/cache_seed.py: the seed no longer covers the run
            terminalreporter.write_line("cache seeds out of date (rows computed beyond them: " + ", ".join(
                f"{m} {n}" for m, n in stale.items()) + "); refresh: MARS_WRITE_CACHE_SEED=1, see tests/cache_seed.py")
