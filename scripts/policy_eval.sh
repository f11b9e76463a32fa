#!/usr/bin/env bash
# A policy checkpoint's evaluation table on the evaluation seeds (10000+, nobody tunes on them): `id` with one
# sample and with the mean of 16 samples, then each OOD split with the mean of 16. Every run writes a result
# store (resumable: a killed run continues where it stopped) and a `--json` file; the end pairs the runs with
# models/policy's on the same seeds.
#   scripts/policy_eval.sh POLICY OUT [SPLIT...]     SPLIT defaults to every OOD split
# Environment: EPISODES (per task, default 50), WORKERS (default 2), VLA (the CLI, default .venv/bin/vla), PY (default
#              .venv/bin/python).
set -euo pipefail
POLICY=${1:?usage: scripts/policy_eval.sh POLICY OUT [SPLIT...]}
OUT=${2:?usage: scripts/policy_eval.sh POLICY OUT [SPLIT...]}
shift 2
SPLITS=("$@")
[ ${#SPLITS[@]} -gt 0 ] || SPLITS=(appearance camera embodiment placement distractors paraphrase)
EPISODES=${EPISODES:-50}
WORKERS=${WORKERS:-2}
read -r -a VLA <<< "${VLA:-.venv/bin/vla}"
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
E=(--policy "$POLICY" --task all --episodes "$EPISODES" --workers "$WORKERS" --seed 10000 --no-progress)

run() {  # run NAME ARGS...: one evaluation into OUT/NAME.{jsonl,json}, timed
  local name=$1 t0
  shift
  t0=$(date +%s)
  "${VLA[@]}" eval "${E[@]}" "$@" --store "$OUT/$name.jsonl" --json "$OUT/$name.json" > "$OUT/$name.txt"
  echo "policy_eval: $name took $(( $(date +%s) - t0 )) s"
}

run id_one --variation id
run id_mean16 --variation id --average 16
for v in "${SPLITS[@]}"; do
  run "${v}_mean16" --variation "$v" --average 16
done
# Paired with models/policy on the same seeds: `id` mean of 16 over every episode (`vla regress` against the
# bundled baseline store), then every run's first 25 episodes per task against models/policy's 25-episode runs
# (steering_eval_round2: id; steering_eval_ood: the OOD splits), once against each of its two executions.
"${VLA[@]}" regress --baseline benchmarks/baselines/bundled_mean16_id.jsonl --candidate "$OUT/id_mean16.jsonl" \
  --out "$OUT/regress_id_mean16.md" || true  # FAIL exits 1; the verdict is in the file either way
R=benchmarks/results
VARIATIONS=$(IFS=,; echo "id,${SPLITS[*]}")
for base in "base avg16" "base"; do
  "$PY" benchmarks/steering_table.py $R/steering_eval_round2/{one_sample,mean16}.json \
    $R/steering_eval_ood/{one_sample,mean16}.json "$OUT"/*.json --base "$base" --episodes 25 --variations "$VARIATIONS"
done
