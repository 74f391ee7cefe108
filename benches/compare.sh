#!/usr/bin/env bash
# Runs recur's lm_bench and PyTorch's reference scripts on the same machine, in the same run,
# and prints recur ÷ PyTorch for every line (throughput ratio; for step times, torch ÷ recur).
#   benches/compare.sh [THREADS...]        (default: 1 2)
# Needs PyTorch: PYTHON=path/to/python (default python3) with torch installed.
# ROUNDS=n (default 3) alternates the two tools n times and keeps each one's best figure, so
# that a burst of load from elsewhere on a shared machine does not decide a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BENCH=${BENCH_DIR:-../shared/bench}
ROUNDS=${ROUNDS:-3}
cargo build --release --example lm_bench >/dev/null 2>&1
out=$(mktemp -d)
for round in $(seq "$ROUNDS"); do
  for t in ${@:-1 2}; do
    ./target/release/examples/lm_bench "$t" char-small zaremba-small char-large long-unroll gru-medium rnn-medium >> "$out/recur-$t.jsonl"
    "$PYTHON" "$BENCH/torch_lm_bench.py" "$t" >> "$out/torch-$t.jsonl"
  done
  ./target/release/examples/lm_bench 1 timeseries-rnn32-b1-t100 custom-lstm-cell-char-small generate-lstm256x2-200chars >> "$out/recur-small.jsonl"
  "$PYTHON" "$BENCH/torch_small_bench.py" 1 >> "$out/torch-small.jsonl"
done
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
METRICS = (("tokens_per_s", True), ("chars_per_s", True), ("step_us", False))
def best(path):
    """The best line per (work, threads) over the rounds."""
    found = {}
    for line in open(path):
        if not line.strip().startswith("{"):
            continue
        r = json.loads(line)
        key = (r.get("config") or r.get("case"), r.get("threads"))
        metric, higher = next((m, h) for m, h in METRICS if m in r)
        old = found.get(key)
        if old is None or (r[metric] > old[metric]) == higher:
            found[key] = r
    return found
print(f"{'work':<40} {'threads':>7} {'recur':>12} {'pytorch':>12} {'ratio':>7}")
for path in sorted(glob.glob(os.path.join(out, "recur-*.jsonl"))):
    torch = best(path.replace("recur-", "torch-"))
    for key, r in best(path).items():
        t = torch.get(key)
        if t is None:
            continue
        for metric, higher_better in METRICS:
            if metric in r and metric in t:
                ratio = r[metric] / t[metric] if higher_better else t[metric] / r[metric]
                print(f"{key[0] + ' ' + metric:<40} {str(key[1] or 1):>7} {r[metric]:>12} {t[metric]:>12} {ratio:>7.2f}")
                break
PY
