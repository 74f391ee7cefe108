#!/usr/bin/env bash
# Runs recur's lm_bench and PyTorch's reference scripts on the same machine, in the same run,
# and prints recur ÷ PyTorch for every line (throughput ratio; for step times, torch ÷ recur):
# `ratio` compares each tool's best round, `paired` is the median of the rounds' own ratios.
#   benches/compare.sh [THREADS...]        (default: 1 2)
# Needs PyTorch: PYTHON=path/to/python (default python3) with torch installed. The reference
# scripts are benches/torch_lm_bench.py and benches/torch_small_bench.py (BENCH_DIR to use others).
# ROUNDS=n (default 3) alternates the two tools n times and keeps each one's best figure, so
# that a burst of load from elsewhere on a shared machine does not decide a ratio. Within a
# round the two run config by config, one right after the other, so that each pair of
# figures is measured under the same load (which tool goes first alternates by round).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BENCH=${BENCH_DIR:-benches}
ROUNDS=${ROUNDS:-3}
cargo build --release --example lm_bench >/dev/null 2>&1
out=$(mktemp -d)
recur() { ./target/release/examples/lm_bench "$1" "$2" >> "$out/recur-$1.jsonl"; }
torch() { "$PYTHON" "$BENCH/torch_lm_bench.py" "$1" "$2" >> "$out/torch-$1.jsonl"; }
small_recur() {
  ./target/release/examples/lm_bench 1 timeseries-rnn32-b1-t100 custom-lstm-cell-char-small \
    generate-lstm256x2-200chars generate-lstm256x2-200chars-bf16 >> "$out/recur-small.jsonl"
}
small_torch() { "$PYTHON" "$BENCH/torch_small_bench.py" 1 >> "$out/torch-small.jsonl"; }
for round in $(seq "$ROUNDS"); do
  for t in ${@:-1 2}; do
    for config in char-small zaremba-small char-large long-unroll gru-medium rnn-medium; do
      if (( round % 2 )); then recur "$t" "$config"; torch "$t" "$config"
      else torch "$t" "$config"; recur "$t" "$config"; fi
    done
  done
  if (( round % 2 )); then small_recur; small_torch; else small_torch; small_recur; fi
done
python3 - "$out" <<'PY'
import json, sys, glob, os, statistics
out = sys.argv[1]
METRICS = (("tokens_per_s", True), ("chars_per_s", True), ("step_us", False))
def rounds(path):
    """Every line per (work, threads), in the order of the rounds."""
    found = {}
    for line in open(path):
        if line.strip().startswith("{"):
            r = json.loads(line)
            if "error" in r:  # work the tool cannot run on this machine
                failed[r.get("config") or r.get("case")] = r["error"]
                continue
            found.setdefault((r.get("config") or r.get("case"), r.get("threads")), []).append(r)
    return found
failed = {}
def metric_of(r):
    return next((m, h) for m, h in METRICS if m in r)
def ratio(r, t):
    """recur ÷ PyTorch as a speed ratio: throughputs divided, step times inverted."""
    metric, higher = metric_of(r)
    return r[metric] / t[metric] if higher else t[metric] / r[metric]
print(f"{'work':<40} {'threads':>7} {'recur':>12} {'pytorch':>12} {'ratio':>7} {'paired':>7}")
for path in sorted(glob.glob(os.path.join(out, "recur-*.jsonl"))):
    torch = rounds(path.replace("recur-", "torch-"))
    for key, rs in rounds(path).items():
        ts = torch.get(key)
        if not ts:
            if key[0] in failed:
                print(f"{key[0]:<40} {str(key[1] or 1):>7}  PyTorch failed: {failed[key[0]][:60]}")
            continue
        metric, higher = metric_of(rs[0])
        pick = max if higher else min
        r, t = pick(rs, key=lambda x: x[metric]), pick(ts, key=lambda x: x[metric])
        # The median of the rounds' own ratios: each pair was measured back to back.
        median = statistics.median(ratio(a, b) for a, b in zip(rs, ts))
        name = f"{key[0]} {metric}"
        print(f"{name:<40} {str(key[1] or 1):>7} {r[metric]:>12} {t[metric]:>12} {ratio(r, t):>7.2f} {median:>7.2f}")
PY
