"""The same gemm shapes as benches/matmul.rs, timed in numpy and PyTorch (f32, one thread).

    OMP_NUM_THREADS=1 python benches/gemm_reference.py

Prints one line per shape: GFLOP/s for x @ W (W [H, 4H]) and x @ W.T (W [4H, H]).
"""
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    torch = None


def rate(fn, flops, min_time=0.5):
    fn()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        reps += 1
    return flops * reps / (time.perf_counter() - start) / 1e9


for h in (128, 256, 512):
    n = 4 * h
    w = np.random.rand(h, n).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    for b in (1, 8, 32, 64):
        x = np.random.rand(b, h).astype(np.float32)
        flops = 2 * b * h * n
        row = [f"B{b}xH{h}x4H", f"numpy xw {rate(lambda: x @ w, flops):6.1f}", f"numpy xwt {rate(lambda: x @ wt.T, flops):6.1f}"]
        if torch is not None:
            tx, tw, twt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(wt)
            row.append(f"torch xw {rate(lambda: tx @ tw, flops):6.1f}")
            row.append(f"torch xwt {rate(lambda: tx @ twt.T, flops):6.1f}")
        print("  ".join(row), flush=True)
