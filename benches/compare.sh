#!/usr/bin/env bash
# Runs recur's lm_bench and PyTorch's reference scripts on the same machine, in the same run,
# and prints recur ÷ PyTorch for every line (throughput ratio; for step times, torch ÷ recur).
#   benches/compare.sh [THREADS...]        (default: 1 2)
# Needs PyTorch: PYTHON=path/to/python (default python3) with torch installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BENCH=${BENCH_DIR:-../shared/bench}
cargo build --release --example lm_bench >/dev/null 2>&1
out=$(mktemp -d)
for threads in "${@:-1 2}"; do
  for t in $threads; do
    ./target/release/examples/lm_bench "$t" char-small zaremba-small char-large long-unroll gru-medium rnn-medium > "$out/recur-$t.jsonl"
    "$PYTHON" "$BENCH/torch_lm_bench.py" "$t" > "$out/torch-$t.jsonl"
  done
done
./target/release/examples/lm_bench 1 timeseries-rnn32-b1-t100 custom-lstm-cell-char-small generate-lstm256x2-200chars > "$out/recur-small.jsonl"
"$PYTHON" "$BENCH/torch_small_bench.py" 1 > "$out/torch-small.jsonl"
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
def load(path):
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
print(f"{'work':<32} {'threads':>7} {'recur':>12} {'pytorch':>12} {'ratio':>7}")
for path in sorted(glob.glob(os.path.join(out, "recur-*.jsonl"))):
    torch = {(r.get("config") or r.get("case"), r.get("threads")): r for r in load(path.replace("recur-", "torch-"))}
    for r in load(path):
        key = (r.get("config") or r.get("case"), r.get("threads"))
        t = torch.get(key)
        if t is None:
            continue
        for metric, higher_better in (("tokens_per_s", True), ("chars_per_s", True), ("step_us", False)):
            if metric in r and metric in t:
                ratio = r[metric] / t[metric] if higher_better else t[metric] / r[metric]
                print(f"{key[0] + ' ' + metric:<32} {str(key[1] or 1):>7} {r[metric]:>12} {t[metric]:>12} {ratio:>7.2f}")
                break
PY
