"""The runner's cost log: the largest process under it, and the README's sentence read from the log."""
import subprocess
import sys

import pandas as pd
import pytest

from mars_lib.pipeline.run_log import FIELDS, append_run, cold_cost_line

LINUX = sys.platform.startswith("linux")


PEAKS = """
import os, subprocess, sys
from mars_lib.pipeline.run_log import PeakRSS, descendants
hold = "import time; b = bytearray({mib} * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep({s})"
with PeakRSS(interval=0.1) as p:
    child = subprocess.Popen([sys.executable, "-c", hold.format(mib=300, s=1.0)])
    while child.pid not in descendants(os.getpid()):
        pass
    child.wait()
with PeakRSS(interval=0.1) as small:         # a smaller child later: not credited with the earlier maximum
    subprocess.run([sys.executable, "-c", hold.format(mib=50, s=0.5)], check=True)
print(p.mib, small.mib)
"""


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_peak_rss_sees_a_child_that_is_still_running_and_one_already_reaped():
    # in a fresh interpreter: PeakRSS counts every process below its own, and this one has the suite's
    # background jobs (tests/conftest.py) below it
    out = subprocess.run([sys.executable, "-c", PEAKS], capture_output=True, text=True, check=True, timeout=120)
    big, small = map(float, out.stdout.split())
    assert 300 <= big < 600, big
    assert 50 <= small < 300, small


def test_cost_line_reads_the_latest_clean_cold_run_of_each_notebook(tmp_path):
    rows = [dict(profile="cpu", notebook="01_margins", seconds=120, peak_rss_mib=3000, cache_state="empty"),
            dict(profile="cpu", notebook="01_margins", seconds=20, peak_rss_mib=1000, cache_state="warm"),
            dict(profile="smoke", notebook="02_self_refinement", seconds=5, peak_rss_mib=900, cache_state="empty"),
            dict(profile="cpu", notebook="02_self_refinement", seconds=300, peak_rss_mib=4200, cache_state="empty")]
    for r in rows:
        append_run(tmp_path, dirty=False, **r)
    append_run(tmp_path, dirty=True, profile="cpu", notebook="02_self_refinement", seconds=9, peak_rss_mib=9,
               cache_state="empty")                      # uncommitted code: not a reference measurement
    log = pd.read_csv(tmp_path / "run_log.csv")
    assert list(log.columns) == FIELDS and len(log) == 5 and log.commit.notna().all()
    line = cold_cost_line(tmp_path)
    assert "01 2.0 min / 3,000 MiB" in line and "02 5.0 min / 4,200 MiB" in line and "over 4 GiB: 02." in line
    assert cold_cost_line(tmp_path, profile="paper") is None
    assert cold_cost_line(tmp_path / "nowhere") is None
