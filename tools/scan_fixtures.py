#!/usr/bin/env python3
"""PyTorch reference fixtures for recur's linear-recurrence layers (minGRU, minLSTM, LRU,
RG-LRU, QRNN): each layer written here as a plain per-row, per-step loop in float64, run
over stacked / bidirectional / variable-length configurations, with its gradients.

Usage: python tools/scan_fixtures.py tests/fixtures/scan
Needs: pip install torch safetensors

Each file (float64; config JSON in the metadata key "config") holds the parameters under
recur's names (prefix "rnn."), input [T, B, in], init.<p> [layers*dirs, B, width_p] for each
state part p, output, final.<p>, the upstream gradients grad_output and grad_final.<p>, and
grad.<name> for every parameter, grad.input and grad.init.<p>.
"""
import json, math, os, sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
D64 = torch.float64


def g(v):
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def param_shapes(kind, inp, H, N):
    if kind == "mingru":
        return {"weight_ih": (2 * H, inp), "bias_ih": (2 * H,)}
    if kind == "minlstm":
        return {"weight_ih": (3 * H, inp), "bias_ih": (3 * H,)}
    if kind == "rglru":
        return {"weight_ih": (3 * H, inp), "bias_ih": (3 * H,), "a_param": (H,)}
    if kind == "qrnn":
        return {"weight_ih": (3 * H, 2 * inp), "bias_ih": (3 * H,)}
    shapes = {"nu_log": (N,), "theta_log": (N,), "B_re": (N, inp), "B_im": (N, inp),
              "C_re": (H, N), "C_im": (H, N)}
    if inp == H:
        shapes["D"] = (H,)
    return shapes


def state_widths(kind, inp, H, N):
    return {"lru": [H, 2 * N], "qrnn": [H, H, 3 * H]}.get(kind, [H])


def draw(name, shape):
    if name == "nu_log":  # ring init, r in [0.5, 0.99]
        u = torch.rand(shape, dtype=D64)
        return torch.log(-0.5 * torch.log(u * (0.99 ** 2 - 0.5 ** 2) + 0.5 ** 2))
    if name == "theta_log":
        return torch.log(math.pi * torch.rand(shape, dtype=D64) + 0.01)
    if name == "a_param":
        return torch.randn(shape, dtype=D64) + 2.0
    return torch.randn(shape, dtype=D64) * 0.5


def step(kind, p, x, state, positive):
    """One step of one row batch: x [b, in], state parts [b, w] -> new state parts."""
    if kind == "mingru":
        k, u = (x @ p["weight_ih"].T + p["bias_ih"]).chunk(2, -1)
        z = torch.sigmoid(k)
        return [(1 - z) * state[0] + z * (g(u) if positive else u)]
    if kind == "minlstm":
        kf, ki, u = (x @ p["weight_ih"].T + p["bias_ih"]).chunk(3, -1)
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        return [f / (f + i) * state[0] + i / (f + i) * (g(u) if positive else u)]
    if kind == "rglru":
        kr, ki, v = (x @ p["weight_ih"].T + p["bias_ih"]).chunk(3, -1)
        r, i = torch.sigmoid(kr), torch.sigmoid(ki)
        a = torch.exp(-8.0 * r * F.softplus(-p["a_param"]))
        return [a * state[0] + torch.sqrt(1 - a * a) * (i * v)]
    if kind == "qrnn":
        # The window's earlier half enters as W_1·x_{t-1}, carried in the state.
        w0, w1 = p["weight_ih"].chunk(2, -1)
        kz, kf, ko = (x @ w0.T + p["bias_ih"] + state[2]).chunk(3, -1)
        z, f, o = torch.tanh(kz), torch.sigmoid(kf), torch.sigmoid(ko)
        c = f * state[1] + (1 - f) * z
        return [o * c, c, x @ w1.T]
    lam = torch.exp(torch.complex(-torch.exp(p["nu_log"]), torch.exp(p["theta_log"])))
    gamma = torch.sqrt(1 - lam.abs() ** 2)
    Bc = torch.complex(p["B_re"], p["B_im"])
    Cc = torch.complex(p["C_re"], p["C_im"])
    h = torch.view_as_complex(state[1].reshape(x.shape[0], -1, 2).contiguous())
    h = lam * h + gamma * (x.to(torch.complex128) @ Bc.T)
    y = (h @ Cc.T).real
    if "D" in p:
        y = y + p["D"] * x
    return [y, torch.view_as_real(h).reshape(x.shape[0], -1)]


def direction(kind, p, xs, init, lengths, reverse, positive):
    """xs [T, B, in]; init parts [B, w]. Outputs [T, B, H] (zeros past lengths), finals."""
    T, B = xs.shape[0], xs.shape[1]
    rows_out, finals = [], [[] for _ in init]
    for b in range(B):
        L = lengths[b]
        state = [s[b:b + 1] for s in init]
        outs = [None] * T
        for t in (reversed(range(L)) if reverse else range(L)):
            state = step(kind, p, xs[t, b:b + 1], state, positive)
            outs[t] = state[0]
        zero = torch.zeros_like(state[0])
        rows_out.append(torch.stack([o if o is not None else zero for o in outs]))
        for k, s in enumerate(state):
            finals[k].append(s)
    return torch.cat(rows_out, 1), [torch.cat(f, 0) for f in finals]


def case(name, kind, T, B, inp, H, layers, bidirectional, lengths, positive=False, N=3):
    dirs = 2 if bidirectional else 1
    lengths = lengths or [T] * B
    params = {}
    for l in range(layers):
        for d in range(dirs):
            li = inp if l == 0 else dirs * H
            sfx = f"_l{l}" + ("_reverse" if d == 1 else "")
            for n, shape in param_shapes(kind, li, H, N).items():
                params["rnn." + n + sfx] = draw(n, shape).requires_grad_()
    widths = state_widths(kind, inp, H, N)
    x = torch.randn(T, B, inp, dtype=D64, requires_grad=True)
    init = []
    for k, w in enumerate(widths):
        init.append(torch.randn(layers * dirs, B, w, dtype=D64, requires_grad=True))
    layer_in = x
    finals = [[] for _ in widths]
    for l in range(layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{l}" + ("_reverse" if d == 1 else "")
            p = {k[4:-len(sfx)]: v for k, v in params.items() if k.endswith(sfx)}
            unit = l * dirs + d
            o, f = direction(kind, p, layer_in, [s[unit] for s in init], lengths, d == 1, positive)
            outs.append(o)
            for k, v in enumerate(f):
                finals[k].append(v)
        layer_in = torch.cat(outs, -1)
    output = layer_in
    finals = [torch.stack(f) for f in finals]
    grad_out = torch.randn_like(output)
    grad_finals = [torch.randn_like(f) for f in finals]
    loss = (output * grad_out).sum() + sum((f * gf).sum() for f, gf in zip(finals, grad_finals))
    loss.backward()
    t = {"input": x, "output": output, "grad_output": grad_out, "grad.input": x.grad}
    for k in range(len(widths)):
        t[f"init.{k}"] = init[k]
        t[f"grad.init.{k}"] = init[k].grad if init[k].grad is not None else torch.zeros_like(init[k])
        t[f"final.{k}"] = finals[k]
        t[f"grad_final.{k}"] = grad_finals[k]
    for n, v in params.items():
        t[n] = v
        t["grad." + n] = v.grad
    config = dict(kind=kind, steps=T, batch=B, input_size=inp, hidden_size=H, num_layers=layers,
                  bidirectional=bidirectional, lengths=lengths, positive=positive, state_size=N)
    save_file({k: v.detach().contiguous() for k, v in t.items()},
              os.path.join(out_dir, name + ".safetensors"), metadata={"config": json.dumps(config)})
    print(name, config)


for kind in ["mingru", "minlstm", "rglru", "lru", "qrnn"]:
    case(f"{kind}_h0", kind, T=5, B=3, inp=5, H=5, layers=1, bidirectional=False, lengths=None)
    case(f"{kind}_bi_lengths", kind, T=5, B=3, inp=4, H=5, layers=2, bidirectional=True,
         lengths=[5, 2, 4])
case("mingru_positive_stack", "mingru", T=6, B=2, inp=3, H=4, layers=2, bidirectional=False,
     lengths=[6, 3], positive=True)
case("minlstm_positive", "minlstm", T=6, B=2, inp=3, H=4, layers=1, bidirectional=False,
     lengths=None, positive=True)
