#!/usr/bin/env bash
# The linear-recurrence cases (torch_scan_bench.py's work) in recur, PyTorch and JAX on the
# same machine, in the same run, alternating the three tools ROUNDS times (default 3), and
# prints each tool's median figure and recur's ratio to each reference's best form.
#   benches/compare_scan.sh [THREADS...]   (default: 1 2)
# Needs PYTHON=path/to/python (default python3) with torch and jax installed; the reference
# scripts are benches/torch_scan_bench.py and benches/jax_scan_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
CASES="scan-op-b16-t512-h1024 mingru-char-t512 minlstm-char-t512 lstm-char-t512"
cargo build --release --example lm_bench >/dev/null 2>&1
out=$(mktemp -d)
for round in $(seq "$ROUNDS"); do
  for t in ${@:-1 2}; do
    for case in $CASES; do
      ./target/release/examples/lm_bench "$t" "$case" >> "$out/recur.jsonl"
      "$PYTHON" benches/torch_scan_bench.py "$t" "$case" >> "$out/torch.jsonl"
      "$PYTHON" benches/jax_scan_bench.py "$t" "$case" 2>/dev/null >> "$out/jax.jsonl"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics
out = sys.argv[1]
def load(tool):
    rows = {}
    for line in open(f"{out}/{tool}.jsonl"):
        r = json.loads(line)
        key = (r.get("case") or r.get("config"), r["threads"])
        rows.setdefault(key, []).append(r.get("elements_per_s") or r["tokens_per_s"])
    return {k: statistics.median(v) for k, v in rows.items()}
recur, torch, jax = load("recur"), load("torch"), load("jax")
print(f"{'case':26} {'thr':>3} {'recur':>12} {'torch':>12} {'jax':>12} {'/torch':>7} {'/jax':>6}")
for key in sorted(recur):
    r, t, j = recur[key], torch.get(key), jax.get(key)
    print(f"{key[0]:26} {key[1]:3} {r:12,.0f} {t:12,.0f} {j:12,.0f} {r / t:7.2f} {r / j:6.2f}")
print("(elements/s for the op, tokens/s for the LM steps; each tool's best form, median of rounds)")
PY
