#!/usr/bin/env bash
# One process × 2 threads against 2 MPI ranks × 1 thread, same run, alternating pairs:
# updates per second of char_lm at the char-large size (2×512 LSTM, batch 64 × 100 steps)
# and of word_lm (Zaremba small: 2×200, batch 20 × 20, vocabulary 10k; needs PTB).
# Each measure is the time of N2 − N1 updates (two runs, so start-up and the final
# evaluation cancel). Needs a build with --features mpi:
#     cargo build --release --features mpi --example char_lm --example word_lm
#     benches/mpi_scaling.sh PAIRS [PTB_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
ptb=${2:-../shared/data/ptb}
bin=target/release/examples
out=$(mktemp -d)
mpirun_2="mpirun --allow-run-as-root --oversubscribe -np 2"

seconds() { # command... → wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" --out "$out/runs" > "$out/log" 2>&1 || { cat "$out/log"; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

# per_update MODE EXAMPLE N1 N2 ARGS...: seconds per update of N2 − N1 updates.
per_update() {
  local mode=$1 example=$2 n1=$3 n2=$4; shift 4
  local launch=() threads=2
  if [ "$mode" = ranks ]; then launch=($mpirun_2); threads=1; fi
  local a b
  a=$(seconds "${launch[@]}" "$bin/$example" "$@" --threads $threads --shards 2 --steps "$n1")
  b=$(seconds "${launch[@]}" "$bin/$example" "$@" --threads $threads --shards 2 --steps "$n2")
  echo "($b - $a) / ($n2 - $n1)" | bc -l
}

char_large="--hidden 512 --embed 512 --layers 2 --batch-size 64 --num-steps 100 --epochs 1 --eval-every 1000000 --log-every 1000000 --time-budget 1e9"
for i in $(seq "$pairs"); do
  t=$(per_update threads char_lm 4 14 $char_large)
  r=$(per_update ranks char_lm 4 14 $char_large)
  printf 'char-large pair %d: 1×2 threads %.0f tokens/s, 2 ranks×1 %.0f tokens/s, ranks ÷ threads %.3f\n' \
    "$i" "$(echo "6400 / $t" | bc -l)" "$(echo "6400 / $r" | bc -l)" "$(echo "$t / $r" | bc -l)"
done
$mpirun_2 "$bin/char_lm" $char_large --threads 1 --shards 2 --steps 6 --out "$out/runs" | grep "gradient exchange"

if [ -d "$ptb" ]; then
  for i in $(seq "$pairs"); do
    t=$(per_update threads word_lm 20 120 --data "$ptb" --epochs 1)
    r=$(per_update ranks word_lm 20 120 --data "$ptb" --epochs 1)
    printf 'zaremba-small pair %d: 1×2 threads %.0f tokens/s, 2 ranks×1 %.0f tokens/s, ranks ÷ threads %.3f\n' \
      "$i" "$(echo "400 / $t" | bc -l)" "$(echo "400 / $r" | bc -l)" "$(echo "$t / $r" | bc -l)"
  done
  $mpirun_2 "$bin/word_lm" --data "$ptb" --epochs 1 --threads 1 --shards 2 --steps 30 --out "$out/runs" | grep "gradient exchange"
fi
rm -rf "$out"
