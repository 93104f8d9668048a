"""A notebook run killed with SIGKILL mid-training resumes with ./run_all.sh to the same tables as an
uninterrupted run; an offline notebook makes no network call (sockets guarded in the kernel)."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _runner(out, *extra):
    return [sys.executable, "-m", "mars_lib.pipeline.runner", "--profile", "smoke", "--only", "03", "-p", "results_dir", str(out),
            "-p", "extra_operators", "[]", "-p", "human_track", "off", *extra]


def test_notebook_killed_mid_training_resumes_to_the_uninterrupted_tables(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(_runner(a, "--force"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    p = subprocess.Popen(_runner(b, "--force"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not (b / "03_rm_training" / "synthetic_accounting.csv").exists():
        time.sleep(0.05)                                 # the pool is built: training starts next
    time.sleep(0.5)                                      # (the smoke training itself takes only seconds)
    assert p.poll() is None, "the run finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)                     # the runner and its kernel
    p.wait()
    assert not (b / "03_rm_training" / "summary.csv").exists()
    r = subprocess.run(_runner(b), cwd=REPO, capture_output=True, text=True, timeout=900)   # no --force
    assert r.returncode == 0 and "up to date, skipped" not in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    for t in ("history.csv", "summary.csv", "allocations_seed0.csv", "intervals.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a / "03_rm_training" / t), pd.read_csv(b / "03_rm_training" / t))
    pd.testing.assert_frame_equal(pd.read_parquet(a / "03_rm_training" / "per_pair_test.parquet"),
                                  pd.read_parquet(b / "03_rm_training" / "per_pair_test.parquet"))


GUARD = r'''
import os, socket
_log = os.environ["MARS_NET_LOG"]
def _local(addr):
    host = addr[0] if isinstance(addr, tuple) else addr
    return not isinstance(host, str) or host.startswith("127.") or host in ("localhost", "::1", "0.0.0.0", "")
def _deny(what):
    with open(_log, "a") as f:
        f.write(what + "\n")
    raise OSError("network disabled by the test: " + what)
_connect, _connect_ex, _gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def connect(self, addr):
    return _connect(self, addr) if self.family == socket.AF_UNIX or _local(addr) else _deny(f"connect {addr}")
def connect_ex(self, addr):
    return _connect_ex(self, addr) if self.family == socket.AF_UNIX or _local(addr) else _deny(f"connect_ex {addr}")
def getaddrinfo(host, *a, **k):
    return _gai(host, *a, **k) if _local((host,)) else _deny(f"getaddrinfo {host}")
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def test_offline_notebook_makes_no_network_call(tmp_path):
    """Notebook 01 on the smoke profile with every non-loopback socket refused in the runner and
    the kernel (a sitecustomize on PYTHONPATH) and the HF offline variables *unset*: the package's
    own offline handling must keep it off the network."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=f"{guard}{os.pathsep}{env.get('PYTHONPATH', '')}", MARS_NET_LOG=str(log))
    cmd = [sys.executable, "-m", "mars_lib.pipeline.runner", "--profile", "smoke", "--only", "01", "--force",
           "-p", "results_dir", str(tmp_path / "results")]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert (tmp_path / "results" / "01_margins" / "reward_gaps.csv").exists()
    assert not log.exists(), f"network calls attempted:\n{log.read_text()[:2000]}"
    # the guard itself works: a non-loopback connection from the same interpreter setup is refused
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('203.0.113.1', 80), 1)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "network disabled by the test" in probe.stderr
