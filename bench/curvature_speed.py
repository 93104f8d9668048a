"""Curvature of a 5,000-pair, 384-dimensional linear head: closed-form Hessian + spectrum + Fisher.

    .venv/bin/python bench/curvature_speed.py        # prints a table; writes results/bench/curvature_speed.csv
Baseline beside it: the Hessian by torch autograd (what one would write without the closed form).
"""
import time

import numpy as np
import pandas as pd
import torch

from mars_lib.pipeline.config import REPO_ROOT
from mars_lib.evaluation.curvature import curvature_summary, hessian
from mars_lib.pipeline.tables import save_table
from mars_lib.mars import allocation_probs


def timed(fn, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    dphi, theta = rng.normal(size=(5000, 384)) * 0.05, rng.normal(size=384)
    q = allocation_probs(dphi @ theta, 0.5, "signed")
    X, W = torch.tensor(dphi), torch.tensor(q)
    rows = [
        {"what": "closed-form Hessian (uniform)", "seconds": timed(lambda: hessian(dphi, theta))},
        {"what": "closed-form Hessian + spectrum + Fisher (MARS weights)", "seconds": timed(lambda: curvature_summary(dphi, theta, q))},
        {"what": "baseline: torch.autograd.functional.hessian", "seconds": timed(
            lambda: torch.autograd.functional.hessian(lambda t: (W * -torch.nn.functional.logsigmoid(X @ t)).sum(),
                                                      torch.tensor(theta)), reps=2)},
    ]
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    save_table(df, REPO_ROOT / "results" / "bench" / "curvature_speed.csv")


if __name__ == "__main__":
    main()
