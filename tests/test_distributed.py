"""Our own fine-tuning and DPO loops run data-parallel unchanged (issue 19): the same worker script
as 1 process and under `accelerate launch` with 2 CPU processes (gloo) gives the same training
losses and final scores within 1e-4 (only the float summation order differs; dropout is off)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mars_lib.reward_models import distributed as ddp

WORKER = Path(__file__).with_name("dist_worker.py")
ROOT = WORKER.parent.parent
TOL = 1e-4
BACKGROUND_MINUTES = 2          # its background job, cold, in the full suite on 2 cores (tests/conftest.py starts the longest first)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def background(tmp: Path) -> dict:
    """Each mode as 1 process and under `accelerate launch` as 2 (gloo), beside the rest of the suite
    (tests/conftest.py): only subprocesses, each on one thread."""
    accelerate = Path(sys.executable).with_name("accelerate")
    out = {}
    for mode in ("finetune", "dpo"):
        d = tmp / mode
        d.mkdir()
        one = _run([sys.executable, str(WORKER), mode, str(d / "one.json")], d)
        two = _run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
                    str(WORKER), mode, str(d / "two.json")], d)
        out[mode] = (d, one, two)
    return out


@pytest.mark.slow                  # real models in child processes: the full suite (and CI) runs it
@pytest.mark.parametrize("mode", ["finetune", "dpo"])
def test_two_processes_train_like_one(background_run, mode):
    d, *procs = background_run[mode]
    for p in procs:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a, b = json.loads((d / "one.json").read_text()), json.loads((d / "two.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["steps"] == b["steps"] > 0
    print(f"{mode}: max |1 process - 2 processes| losses "
          f"{np.max(np.abs(np.subtract(a['losses'], b['losses']))):.2e}, scores "
          f"{np.max(np.abs(np.subtract(a['scores'], b['scores']))):.2e}")
    assert np.max(np.abs(np.subtract(a["losses"], b["losses"]))) <= TOL
    assert np.max(np.abs(np.subtract(a["scores"], b["scores"]))) <= TOL
    assert np.ptp(a["scores"]) > 10 * TOL            # the scores are not all equal (training moved them)
    if mode == "finetune":                           # rank 0 alone wrote the model
        assert (d / "two.json.model" / "mars_finetune.json").exists()


def test_shard_splits_a_micro_batch_without_loss_or_overlap():
    idx = list(range(7))
    parts = [ddp.shard(idx, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == idx and parts[0] == [0, 3, 6]
    assert ddp.shard(idx) == idx                     # one process: everything
