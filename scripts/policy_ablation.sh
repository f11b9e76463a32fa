#!/usr/bin/env bash
# One single-item ablation of the v7 recipe (issue 17): the same training run (seed 0, 14000 steps) with one
# item removed, then the development-seed evaluation (30000+, never the evaluation seeds).
#   scripts/policy_ablation.sh ITEM [OUT]      ITEM: none | roles | recovery | randomize | arms
#     none       the v7 recipe itself (the reference the four pair with; SKIP_TRAIN=1 with an existing OUT)
#     roles      no --role-grounding (the object head reads the pooled vision features, as v5's)
#     recovery   expert data only (no recovery episodes)
#     randomize  unrandomised expert + recovery collections (collected first, if missing)
#     arms       Panda-only randomised collections (collected first, if missing)
# Environment: DATA (default data), WORKERS (default 2), VLA (default .venv/bin/vla), RESUME (set to
# --resume to continue a killed run), SKIP_TRAIN (1: evaluate OUT as it is), EPISODES (dev episodes per
# task, default 25). Pair two results: `vla regress --baseline REF.dev_id_mean16.jsonl --candidate ...`.
set -euo pipefail
ITEM=${1:?usage: scripts/policy_ablation.sh none|roles|recovery|randomize|arms [OUT]}
OUT=${2:-runs/abl_$ITEM}
DATA=${DATA:-data}
WORKERS=${WORKERS:-2}
EPISODES=${EPISODES:-25}
read -r -a VLA <<< "${VLA:-.venv/bin/vla}"
EXPERT=$DATA/expert_v6
RECOVERY=$DATA/recovery_v6
ROLES=(--role-grounding)
collect() {  # collect OUT QUALITY EPISODES SEED ARGS...: the recipe's collection with other scene options
  local out=$1 quality=$2 episodes=$3 seed=$4
  shift 4
  "${VLA[@]}" sim collect --task all --variation id --image-size 64 --workers "$WORKERS" --no-progress \
    --quality "$quality" --episodes "$episodes" --seed "$seed" --out "$out" "$@"
}
case $ITEM in
  none) ;;
  roles) ROLES=() ;;
  recovery) RECOVERY= ;;
  randomize)
    EXPERT=$DATA/expert_v6_plain RECOVERY=$DATA/recovery_v6_plain
    collect "$EXPERT" expert 2000 0 --arm panda,xarm
    collect "$RECOVERY" recovery 1200 100000 --arm panda,xarm ;;
  arms)
    EXPERT=$DATA/expert_v6_panda RECOVERY=$DATA/recovery_v6_panda
    collect "$EXPERT" expert 2000 0 --arm panda --randomize
    collect "$RECOVERY" recovery 1200 100000 --arm panda --randomize ;;
  *) echo "unknown ablation item: $ITEM (none, roles, recovery, randomize, arms)" >&2; exit 2 ;;
esac
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
t0=$(date +%s)
# shellcheck disable=SC2086  # RECOVERY and RESUME are empty or one word
"${VLA[@]}" train policy --data "$EXPERT" $RECOVERY --out "$OUT" "${ROLES[@]}" --anchor --vision-strides 2,1,1 \
  --proprio-inputs ee_x,ee_y,ee_z,ee_yaw,gripper_width --steps 14000 --grounding-steps 2000 \
  --aux-object-steps 2 --aux-object-input vision --aux-object-weight 2 --batch-size 64 --lr 3e-4 --seed 0 \
  --val-every 1000 --ckpt-every 1000 --no-progress ${RESUME:-}
echo "ablation $ITEM: train took $(( $(date +%s) - t0 )) s"
fi
"${VLA[@]}" eval --policy "$OUT" --task all --variation id --episodes "$EPISODES" --workers "$WORKERS" --seed 30000 \
  --average 16 --no-progress --store "$OUT.dev_id_mean16.jsonl" --json "$OUT.dev_id_mean16.json"
