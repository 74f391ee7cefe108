#!/usr/bin/env python3
"""PyTorch reference fixtures for recur's nn pieces beyond the sequence layers (those come
from tools/torch_fixtures.py): single cells, Linear, optimizer steps, and a plain
model state_dict saved by safetensors.torch.save_file.

Usage: python tools/torch_nn_fixtures.py tests/fixtures/nn
Needs: pip install torch safetensors

Formats (all float64; config JSON in the metadata key "config"):
  cell_*:   weights under PyTorch's cell names, input, h0 [, c0], h1 [, c1],
            grad_h1 [, grad_c1] (upstream gradients), grad.<name> for input, h0, c0, weights
  linear_*: weight, bias?, input, output, grad_out, grad.input, grad.weight, grad.bias?
  optim_*:  p0.<name> initial parameters, step<k>.<name> the gradient fed at step k,
            final.<name> the parameters after all steps
  state_dict_*: a model's state_dict exactly as save_file writes it (float32)
"""
import json, os, sys
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def save(name, tensors, config):
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(out, name + ".safetensors"),
              metadata={"config": json.dumps(config)})
    print(name, config)


def cell_case(name, kind, input_size, hidden, bias, nonlinearity=None):
    kw = dict(bias=bias)
    if nonlinearity:
        kw["nonlinearity"] = nonlinearity
    cell = getattr(torch.nn, kind)(input_size, hidden, **kw).double()
    B = 3
    x = torch.randn(B, input_size, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, hidden, dtype=torch.float64, requires_grad=True)
    t = {}
    if kind == "LSTMCell":
        c0 = torch.randn(B, hidden, dtype=torch.float64, requires_grad=True)
        h1, c1 = cell(x, (h0, c0))
        gh, gc = torch.randn_like(h1), torch.randn_like(c1)
        ((h1 * gh).sum() + (c1 * gc).sum()).backward()
        t.update(c0=c0, c1=c1, grad_c1=gc, **{"grad.c0": c0.grad})
    else:
        h1 = cell(x, h0)
        gh = torch.randn_like(h1)
        (h1 * gh).sum().backward()
    t.update(input=x, h0=h0, h1=h1, grad_h1=gh, **{"grad.input": x.grad, "grad.h0": h0.grad})
    for k, p in cell.named_parameters():
        t[k] = p
        t["grad." + k] = p.grad
    save(name, t, dict(kind=kind, input_size=input_size, hidden_size=hidden, bias=bias, nonlinearity=nonlinearity))


cell_case("cell_rnn_tanh", "RNNCell", 4, 5, True, "tanh")
cell_case("cell_rnn_relu_nobias", "RNNCell", 4, 5, False, "relu")
cell_case("cell_lstm", "LSTMCell", 4, 5, True)
cell_case("cell_gru", "GRUCell", 4, 5, True)
cell_case("cell_gru_nobias", "GRUCell", 3, 2, False)

for bias in (True, False):
    lin = torch.nn.Linear(6, 4, bias=bias).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    y = lin(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    t = dict(weight=lin.weight, input=x, output=y, grad_out=g, **{"grad.input": x.grad, "grad.weight": lin.weight.grad})
    if bias:
        t.update(bias=lin.bias, **{"grad.bias": lin.bias.grad})
    save(f"linear_{'bias' if bias else 'nobias'}", t, dict(kind="Linear", in_features=6, out_features=4, bias=bias))

OPTIMIZERS = {
    "optim_sgd": ("SGD", dict(lr=0.1)),
    "optim_sgd_momentum_wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "optim_sgd_nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "optim_adam": ("Adam", dict(lr=0.01)),
    "optim_adam_wd": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "optim_adamw": ("AdamW", dict(lr=0.01, weight_decay=0.05)),
}
STEPS = 5
for name, (kind, kw) in OPTIMIZERS.items():
    params = {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(5, dtype=torch.float64)}
    t = {f"p0.{k}": v.clone() for k, v in params.items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    opt = getattr(torch.optim, kind)(list(ps.values()), foreach=False, **kw)
    for s in range(STEPS):
        for k, p in ps.items():
            g = torch.randn_like(p)
            t[f"step{s}.{k}"] = g
            p.grad = g.clone()
        opt.step()
    t.update({f"final.{k}": p.detach() for k, p in ps.items()})
    cfg = dict(kind=kind, steps=STEPS, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()})
    save(name, t, cfg)


class TinyLm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(11, 6, padding_idx=0)
        self.rnn = torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True)
        self.fc = torch.nn.Linear(16, 11)


model = TinyLm()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "state_dict_tiny_lm.safetensors"))
print("state_dict_tiny_lm", list(model.state_dict()))
