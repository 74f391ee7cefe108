#!/usr/bin/env python3
"""Draws docs/unroll.svg from the output of `cargo bench --bench unroll`: time per step and
peak memory against T (log-log), fused, composed and checkpointed, for RNN, LSTM and GRU.

Usage: cargo bench --bench unroll | tee unroll.log; python3 tools/plot_unroll.py unroll.log docs/unroll.svg
"""
import math, re, sys

log = open(sys.argv[1]).read()
time = {}  # (cell, mode) -> {T: microseconds per step}
name = None
for line in log.splitlines():
    m = re.match(r"^unroll/(\w+)/(\w+)/(\d+)", line)
    if m:
        name = m.groups()
    t = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", line)
    if t and name and "%" not in line:
        value, unit = float(t.group(1)), t.group(2)
        per_s = value * {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}[unit]
        time.setdefault((name[0], name[1]), {})[int(name[2])] = 1e6 / per_s
        name = None
memory = {}
for m in re.finditer(r"^(rnn|lstm|gru)\s+(\d+)\s+(fused|composed|checkpointed)\s+([\d.]+)$", log, re.M):
    cell, steps, mode, value = m.group(1), int(m.group(2)), m.group(3), float(m.group(4))
    memory.setdefault((cell, mode), {})[steps] = value

W, H, PAD = 420, 300, 55
DASHES = {"fused": "", "composed": ' stroke-dasharray="5,3"', "checkpointed": ' stroke-dasharray="1,3"'}
colors = {"rnn": "#1f77b4", "lstm": "#d62728", "gru": "#2ca02c"}
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{2 * W}" height="{H}" fill="white"/>']

def panel(x0, title, series, ylabel):
    xs = [t for s in series.values() for t in s]
    ys = [v for s in series.values() for v in s.values()]
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    ly0, ly1 = math.log10(min(ys)) - 0.1, math.log10(max(ys)) + 0.1
    px = lambda t: x0 + PAD + (math.log10(t) - lx0) / (lx1 - lx0) * (W - 2 * PAD)
    py = lambda v: H - PAD + 10 - (math.log10(v) - ly0) / (ly1 - ly0) * (H - 2 * PAD)
    out.append(f'<text x="{x0 + W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>')
    out.append(f'<line x1="{x0 + PAD}" y1="{H - PAD + 10}" x2="{x0 + W - PAD}" y2="{H - PAD + 10}" stroke="black"/>')
    out.append(f'<line x1="{x0 + PAD}" y1="{PAD - 10}" x2="{x0 + PAD}" y2="{H - PAD + 10}" stroke="black"/>')
    for t in sorted(set(xs)):
        out.append(f'<text x="{px(t)}" y="{H - PAD + 25}" text-anchor="middle">{t}</text>')
    for e in range(math.floor(ly0), math.ceil(ly1) + 1):
        v = 10 ** e
        if ly0 <= e <= ly1:
            out.append(f'<text x="{x0 + PAD - 5}" y="{py(v) + 4}" text-anchor="end">{v:g}</text>')
            out.append(f'<line x1="{x0 + PAD}" y1="{py(v)}" x2="{x0 + W - PAD}" y2="{py(v)}" stroke="#ddd"/>')
    out.append(f'<text x="{x0 + W / 2}" y="{H - 8}" text-anchor="middle">unroll length T</text>')
    out.append(f'<text x="{x0 + 14}" y="{H / 2}" text-anchor="middle" transform="rotate(-90 {x0 + 14} {H / 2})">{ylabel}</text>')
    for (cell, mode), pts in sorted(series.items()):
        path = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in sorted(pts.items()))
        dash = DASHES[mode]
        out.append(f'<polyline points="{path}" fill="none" stroke="{colors[cell]}" stroke-width="2"{dash}/>')
    for i, (cell, mode) in enumerate(sorted(series)):
        y = PAD + 14 * i
        dash = DASHES[mode]
        out.append(f'<line x1="{x0 + W - PAD - 120}" y1="{y}" x2="{x0 + W - PAD - 100}" y2="{y}" stroke="{colors[cell]}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x0 + W - PAD - 95}" y="{y + 4}">{cell} {mode}</text>')

panel(0, "time per step (forward + backward)", time, "µs per step")
panel(W, "peak memory of one pass", memory, "MB")
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out))
print(f"wrote {sys.argv[2]}: {len(time)} time series, {len(memory)} memory series")
