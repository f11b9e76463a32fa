#!/usr/bin/env bash
# One single-item ablation of the v7 recipe (issue 17): scripts/policy_recipe.sh with one item switched
# off (the same seed-0, 14000-step training), then the development-seed evaluation (30000+, never the
# evaluation seeds).
#   scripts/policy_ablation.sh ITEM [OUT]      ITEM: none | roles | recovery | randomize | arms
#     none       the v7 recipe itself (the reference the four pair with; SKIP_TRAIN=1 with an existing OUT)
#     roles | recovery | randomize | arms: ROLES=0 | RECOVERY=0 | RANDOMIZE=0 | ARMS=panda in the recipe
# Environment: the recipe's (DATA, WORKERS, VLA, RESUME), SKIP_TRAIN (1: evaluate OUT as it is),
# EPISODES (dev episodes per task, default 25), SPLITS (the variations evaluated, default `id`; the
# randomisation and second-arm items are about robustness, so also e.g. SPLITS="appearance camera" or
# "embodiment", with the reference evaluated on the same). Pair two results of one split:
# `vla regress --baseline REF.dev_SPLIT_mean16.jsonl --candidate OUT.dev_SPLIT_mean16.jsonl`.
set -euo pipefail
ITEM=${1:?usage: scripts/policy_ablation.sh none|roles|recovery|randomize|arms [OUT]}
OUT=${2:-runs/abl_$ITEM}
export WORKERS=${WORKERS:-2}  # the recipe's collections use the same count
EPISODES=${EPISODES:-25}
export VLA=${VLA:-.venv/bin/vla}  # the recipe reads the same command
read -r -a VLA_ARGV <<< "$VLA"
case $ITEM in
  none) SWITCH=() ;;
  roles) SWITCH=(ROLES=0) ;;
  recovery) SWITCH=(RECOVERY=0) ;;
  randomize) SWITCH=(RANDOMIZE=0) ;;
  arms) SWITCH=(ARMS=panda) ;;
  *) echo "unknown ablation item: $ITEM (none, roles, recovery, randomize, arms)" >&2; exit 2 ;;
esac
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  env "${SWITCH[@]}" bash "$(dirname "$0")/policy_recipe.sh" "$OUT"
fi
for split in ${SPLITS:-id}; do
  "${VLA_ARGV[@]}" eval --policy "$OUT" --task all --variation "$split" --episodes "$EPISODES" --workers "$WORKERS" \
    --seed 30000 --average 16 --no-progress --store "$OUT.dev_${split}_mean16.jsonl" --json "$OUT.dev_${split}_mean16.json"
done
