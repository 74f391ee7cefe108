#!/usr/bin/env python3
"""PyTorch reference values and gradients (float64) for recur's elementwise ops: softplus,
sqrt, sin, cos, pow, rsqrt, log1p, silu, gelu (erf and tanh forms), leaky_relu, clamp, abs
(also at their kinks); the reductions with dim/keepdim (sum, mean, max, var with a
correction); and broadcasting by PyTorch's rules (a column against a matrix, an outer
product).

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
    "gelu": (x, F.gelu),
    "gelu_tanh": (x, lambda v: F.gelu(v, approximate="tanh")),
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
# Reductions over r [3, 4, 5] and broadcasts of m [3, 4] with c [3, 1] and w [1, 4]: each
# case's output "<name>" and, for the upstream gradient "grad_<name>" of its shape, the
# gradients "grad.<name>.<input>".
r = torch.randn(3, 4, 5, dtype=torch.float64)
m, c, w = (torch.randn(*s, dtype=torch.float64) for s in ((3, 4), (3, 1), (1, 4)))
t.update(r=r, m=m, c=c, w=w)
cases = {
    "sum_dim1_keep": (("r",), lambda r: r.sum(1, keepdim=True)),
    "mean_dim2_keep": (("r",), lambda r: r.mean(2, keepdim=True)),
    "max_dim1_keep": (("r",), lambda r: r.max(1, keepdim=True).values),
    "var_dim2_c1_keep": (("r",), lambda r: r.var(2, correction=1, keepdim=True)),
    "var_dim0_c0": (("r",), lambda r: r.var(0, correction=0)),
    "sub_column": (("m", "c"), lambda m, c: m - c),
    "div_column": (("m", "c"), lambda m, c: m / (c.abs() + 0.5)),
    "mul_outer": (("c", "w"), lambda c, w: c * w),
}
for name, (args, f) in cases.items():
    vs = [t[a].clone().requires_grad_() for a in args]
    y = f(*vs)
    gy = torch.randn_like(y)
    (y * gy).sum().backward()
    t[name] = y.detach()
    t["grad_" + name] = gy
    for a, v in zip(args, vs):
        t[f"grad.{name}.{a}"] = v.grad
save_file({k: v.contiguous() for k, v in t.items()}, sys.argv[1])
print(sorted(ops))
