#!/usr/bin/env python3
"""PyTorch references (float64) for the cells and the op of docs/custom-cell.md
(tutorial/src): the minimal gated unit, fastrnns' layer-norm LSTM, IndRNN, the peephole LSTM,
each as a per-step loop, and Mish (F.mish).

Usage: python tools/tutorial_fixtures.py tests/fixtures/tutorial.safetensors
Needs: pip install torch safetensors

For each cell <c> (mgu, lnlstm, indrnn, peephole): its parameters under recur's names
("<c>.w.weight", ...), "<c>.x" [T, B, I], "<c>.h0" (and "<c>.c0") [B, H], the loss weights
"<c>.g_out" [T, B, H] and "<c>.g_<part>" [B, H] of loss = Σ out·g_out + Σ final_part·g_part,
the outputs "<c>.out", the final states "<c>.final.<part>", and "grad.<name>" for x, the
initial state parts and every parameter. Mish: "mish.x", "mish.y", "mish.g", "grad.mish.x".
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
T, B, I, H = 5, 3, 4, 6
t = {}


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64) * 0.5


def mgu(p, x, h):
    xf, xh = F.linear(x, p["w.weight"], p["w.bias"]).chunk(2, 1)
    f = torch.sigmoid(xf + h @ p["u_f.weight"].T)
    cand = torch.tanh(xh + (f * h) @ p["u_h.weight"].T)
    return (h + f * (cand - h),)


def lnlstm(p, x, h, c):
    def ln(v, n):
        return F.layer_norm(v, v.shape[-1:], p[n + ".weight"], p[n + ".bias"], 1e-5)
    g = (ln(x @ p["w.weight"].T, "ln_x") + ln(h @ p["u.weight"].T, "ln_h")).chunk(4, 1)
    c = ln(torch.sigmoid(g[1]) * c + torch.sigmoid(g[0]) * torch.tanh(g[2]), "ln_c")
    return torch.sigmoid(g[3]) * torch.tanh(c), c


def indrnn(p, x, h):
    return (torch.relu(F.linear(x, p["w.weight"], p["w.bias"]) + p["u"] * h),)


def peephole(p, x, h, c):
    z = (F.linear(x, p["w.weight"], p["w.bias"]) + h @ p["u.weight"].T).chunk(4, 1)
    i = torch.sigmoid(z[0] + p["p_i"] * c)
    f = torch.sigmoid(z[1] + p["p_f"] * c)
    c = f * c + i * torch.tanh(z[2])
    o = torch.sigmoid(z[3] + p["p_o"] * c)
    return o * torch.tanh(c), c


shapes = {
    "mgu": (mgu, {"w.weight": (2 * H, I), "w.bias": (2 * H,), "u_f.weight": (H, H),
                  "u_h.weight": (H, H)}, 1),
    "lnlstm": (lnlstm, {"w.weight": (4 * H, I), "u.weight": (4 * H, H),
                        "ln_x.weight": (4 * H,), "ln_x.bias": (4 * H,),
                        "ln_h.weight": (4 * H,), "ln_h.bias": (4 * H,),
                        "ln_c.weight": (H,), "ln_c.bias": (H,)}, 2),
    "indrnn": (indrnn, {"w.weight": (H, I), "w.bias": (H,), "u": (H,)}, 1),
    "peephole": (peephole, {"w.weight": (4 * H, I), "w.bias": (4 * H,), "u.weight": (4 * H, H),
                            "p_i": (H,), "p_f": (H,), "p_o": (H,)}, 2),
}
for name, (step, params, parts) in shapes.items():
    p = {k: rand(*s).requires_grad_() for k, s in params.items()}
    x = rand(T, B, I).requires_grad_()
    init = [rand(B, H).requires_grad_() for _ in range(parts)]
    state, outs = tuple(init), []
    for k in range(T):
        state = step(p, x[k], *state)
        outs.append(state[0])
    out = torch.stack(outs)
    part_names = ["h", "c"][:parts]
    g_out = rand(T, B, H)
    g_final = [rand(B, H) for _ in range(parts)]
    loss = (out * g_out).sum() + sum((s * g).sum() for s, g in zip(state, g_final))
    loss.backward()
    t[f"{name}.x"], t[f"grad.{name}.x"] = x, x.grad
    t[f"{name}.g_out"], t[f"{name}.out"] = g_out, out
    for part, v, g, s in zip(part_names, init, g_final, state):
        t[f"{name}.{part}0"], t[f"grad.{name}.{part}0"] = v, v.grad
        t[f"{name}.g_{part}"], t[f"{name}.final.{part}"] = g, s
    for k, v in p.items():
        t[f"{name}.{k}"], t[f"grad.{name}.{k}"] = v, v.grad

x = torch.cat([torch.linspace(-6, 6, 25, dtype=torch.float64), rand(7)]).requires_grad_()
g = rand(32)
y = F.mish(x)
(y * g).sum().backward()
t.update({"mish.x": x, "mish.y": y, "mish.g": g, "grad.mish.x": x.grad})
save_file({k: v.detach().contiguous() for k, v in t.items()}, sys.argv[1])
print(len(t), "tensors")
