#!/usr/bin/env bash
# Times two builds of lm_bench against each other, pair by pair: A and B run the same cases
# one right after the other (which goes first alternates), and for each case the script
# prints B ÷ A of the throughput (tokens/s, chars/s or elements/s) per pair and the median.
# Pairing keeps a ratio meaningful on a machine whose speed drifts between runs.
#   benches/ab_pairs.sh PAIRS THREADS A_BINARY B_BINARY CASE...
# e.g. build lm_bench, copy it to /tmp/lm_a, change the code, build again, then
#   benches/ab_pairs.sh 8 1 /tmp/lm_a target/release/examples/lm_bench char-small gru-medium
set -euo pipefail
pairs=$1 threads=$2 a=$3 b=$4
shift 4
out=$(mktemp -d)
for i in $(seq "$pairs"); do
  if (( i % 2 )); then
    "$a" "$threads" "$@" > "$out/a$i"; "$b" "$threads" "$@" > "$out/b$i"
  else
    "$b" "$threads" "$@" > "$out/b$i"; "$a" "$threads" "$@" > "$out/a$i"
  fi
done
python3 - "$out" "$pairs" "$@" <<'PY'
import json, statistics, sys
out, pairs, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def speed(path, case):
    for line in open(path):
        if line.startswith("{"):
            r = json.loads(line)
            if (r.get("config") or r.get("case")) == case:
                return next(r[k] for k in ("tokens_per_s", "chars_per_s", "elements_per_s") if k in r)
    raise SystemExit(f"{path}: no line for {case}")
for case in cases:
    ratios = [speed(f"{out}/b{i}", case) / speed(f"{out}/a{i}", case) for i in range(1, pairs + 1)]
    print(f"{case:<40} B/A median {statistics.median(ratios):.3f}  pairs "
          + " ".join(f"{r:.3f}" for r in ratios))
PY
rm -r "$out"
