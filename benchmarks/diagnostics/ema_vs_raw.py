"""Do EMA weights help? Closed-loop success of the EMA (saved) vs the raw (training-state) weights.

    python benchmarks/diagnostics/ema_vs_raw.py [--policy models/policy] [--episodes 20] [--workers 2]

Both variants run the same seeded `id` episodes (paired). The raw weights come
from `<policy>.training_state/state.safetensors`. Last stdout line: JSON
`{"ema": {"successes", "episodes"}, "raw": {...}}`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from sim.tasks import TASKS
from vla_app.evaluate import EvalConfig, evaluate
from vla_app.report import summary_row, task_table
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.training import state_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20_000)
    args = ap.parse_args()
    state = load_file(str(state_dir(Path(args.policy)) / "state.safetensors"))
    raw = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    ema_policy = VLAPolicy.from_pretrained(args.policy)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = ema_policy.save_pretrained(Path(tmp) / "raw", state_dict=raw)
        for name, path in (("ema", args.policy), ("raw", str(raw_dir))):
            rows = evaluate(EvalConfig(policy=path, tasks=TASKS, episodes=args.episodes, workers=args.workers,
                                       seed=args.seed, method=name), progress=False)
            print(task_table(rows))
            avg = summary_row(rows)
            out[name] = {"successes": avg["successes"], "episodes": avg["episodes"], "ci95": avg["ci95"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
