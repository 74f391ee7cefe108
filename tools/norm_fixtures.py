#!/usr/bin/env python3
"""PyTorch reference fixtures for recur's LayerNorm and RmsNorm (float64): torch.nn.LayerNorm
and torch.nn.RMSNorm with and without their elementwise affine parameters, random weights.

Usage: python tools/norm_fixtures.py tests/fixtures/norm
Needs: pip install torch safetensors

Each file holds the parameters under "norm.weight" / "norm.bias" (when the module has them),
input [3, 4, 6], output, grad_output (the upstream gradient), and grad.input,
grad.norm.weight, grad.norm.bias; the config JSON (metadata key "config") gives the kind,
eps, affine and bias.
"""
import json, os, sys
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)


def case(name, module, config):
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    y = module(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    t = {"input": x, "output": y, "grad_output": g, "grad.input": x.grad}
    for n, p in module.named_parameters():
        t["norm." + n] = p
        t["grad.norm." + n] = p.grad
    save_file({k: v.detach().contiguous() for k, v in t.items()},
              os.path.join(out_dir, name + ".safetensors"), metadata={"config": json.dumps(config)})
    print(name, config)


case("layer_norm", torch.nn.LayerNorm(6), dict(kind="layer", eps=1e-5, affine=True, bias=True))
case("layer_norm_no_bias", torch.nn.LayerNorm(6, eps=1e-3, bias=False),
     dict(kind="layer", eps=1e-3, affine=True, bias=False))
case("layer_norm_plain", torch.nn.LayerNorm(6, elementwise_affine=False),
     dict(kind="layer", eps=1e-5, affine=False, bias=False))
case("rms_norm", torch.nn.RMSNorm(6, eps=1e-6), dict(kind="rms", eps=1e-6, affine=True))
case("rms_norm_plain", torch.nn.RMSNorm(6, elementwise_affine=False),
     dict(kind="rms", eps=None, affine=False))
