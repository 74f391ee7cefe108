#!/usr/bin/env python3
"""PyTorch reference values and gradients (float64) for recur's elementwise ops: softplus,
sqrt, sin, cos, pow, rsqrt, log1p, silu, leaky_relu, clamp, abs, layer-free and at their kinks.

Usage: python tools/elementwise_fixtures.py tests/fixtures/elementwise.safetensors
Needs: pip install torch safetensors

Holds "input" (values in [-3, 3] and the kinks 0, -0.5, 0.7), "positive" (|input| + 0.5, for
the ops defined on x > 0), "grad_output", and for each op "<op>" (its output) and
"grad.<op>" (the gradient of sum(output * grad_output) with respect to its input).
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
x = torch.cat([torch.rand(21, dtype=torch.float64) * 6 - 3,
               torch.tensor([0.0, -0.5, 0.7], dtype=torch.float64)])
pos = x.abs() + 0.5
g = torch.randn_like(x)
ops = {
    "softplus": (x, F.softplus),
    "sqrt": (pos, torch.sqrt),
    "sin": (x, torch.sin),
    "cos": (x, torch.cos),
    "pow": (pos, lambda v: v.pow(2.5)),
    "rsqrt": (pos, torch.rsqrt),
    "log1p": (pos, torch.log1p),
    "silu": (x, F.silu),
    "leaky_relu": (x, lambda v: F.leaky_relu(v, 0.1)),
    "clamp": (x, lambda v: v.clamp(-0.5, 0.7)),
    "abs": (x, torch.abs),
}
t = {"input": x, "positive": pos, "grad_output": g}
for name, (inp, f) in ops.items():
    v = inp.clone().requires_grad_()
    y = f(v)
    (y * g).sum().backward()
    t[name] = y.detach()
    t["grad." + name] = v.grad
save_file({k: v.contiguous() for k, v in t.items()}, sys.argv[1])
print(sorted(ops))
