#!/usr/bin/env bash
# How the committed numerical-bias stores were computed: the book profile's steps, in order, each one judge
# at its sizes (kinds of cell: main, sampled, ranges, other_form; see run.NumericalBiasProfile), the judges
# done before replayed at theirs. Resumable: rerun this file; stored records are never recomputed, and a
# finished step only replays. Each finished step writes the tables and commits them with the stores.
#   nohup env OMP_NUM_THREADS=1 bash results/numerical_bias/book_schedule.sh > /tmp/nb_book.log 2>&1 &
cd "$(git rev-parse --show-toplevel)" || exit 1
export OMP_NUM_THREADS=1
declare -A SIZE
ORDER=()
OUT=results/numerical_bias

commit() {
  local msg
  msg=$(.venv/bin/python - "$1" <<'PY'
import sys, pandas as pd
c = pd.read_csv("results/numerical_bias/costs.csv")
j = sys.argv[1].split("=")[0]
c = c[c["judge"] == j]
rate = "" if c.empty else (f"; last live run {c['records'].iloc[-1]:.0f} items at {c['seconds_per_item'].iloc[-1]:.2f} s/item, "
                           f"{c['generations'].iloc[-1]:.0f} generations, load {c['load_1min'].iloc[-1]:.1f}")
print(f"Numerical bias book run: {sys.argv[1]}{rate}")
PY
)
  for _ in 1 2 3; do
    git add $OUT/*.csv $OUT/*.json $OUT/stores/*.sqlite && git commit -q -m "$msg" -- $OUT/*.csv $OUT/*.json $OUT/stores/*.sqlite && return 0
    sleep 5
  done
  echo "commit failed: $msg"
}

step() {
  local j=$1 s=$2 args=() k
  for k in "${ORDER[@]}"; do [[ $k != "$j" ]] && args+=("$k=${SIZE[$k]}"); done
  args+=("$j=$s")
  echo "=== $(date -u +%FT%TZ) step $j=$s (load $(cut -d' ' -f1 /proc/loadavg))"
  if .venv/bin/judgelab run numerical-bias --profile book --live --judges "${args[@]}"; then
    [[ -z ${SIZE[$j]+x} ]] && ORDER+=("$j")
    SIZE[$j]=$s
    commit "$j=$s"
  else
    echo "=== step $j=$s failed; continuing without it"
  fi
}

S=smollm2-135m-instruct G=gemma-3-270m:base Q=qwen2.5-coder-0.5b-instruct
F=gemma-3-270m:sft D=gemma-3-270m:dpo Q15=qwen2.5-coder-1.5b-instruct
for N in 50 100 200; do
  R=$(( N < 50 ? N : 50 ))  # ranges, sampled and the other form stay at 50 items (their design)
  step $S main:$N
  step $S main:$N,sampled:$R,ranges:$R
  step $G main:$N
  step $Q main:$N
  step $Q main:$N,sampled:$R,ranges:$R
  step $G main:$N,sampled:$R
  step $F main:$N,sampled:$R,ranges:$R
  step $D main:$N,sampled:$R,ranges:$R
  step $S main:$N,sampled:$R,ranges:$R,other_form:$R
  step $Q main:$N,sampled:$R,ranges:$R,other_form:$R
  step $F main:$N,sampled:$R,ranges:$R,other_form:$R
  step $D main:$N,sampled:$R,ranges:$R,other_form:$R
  step $Q15 main:$N
  step $Q15 main:$N,sampled:$R,ranges:$R
  step $Q15 main:$N,sampled:$R,ranges:$R,other_form:$R
done
echo "=== $(date -u +%FT%TZ) schedule done"
