"""The one renderer of evaluation rows (`vla eval` rows: task, variation, method, successes, episodes, ci95):
a per-task table with the pooled average (`vla eval`, `vla demo`) and a variation x task pivot
(`benchmarks/eval_table.py`). Every cell is `success% [lo, hi]` with the Wilson 95% interval."""

from __future__ import annotations

from collections import defaultdict

from vla_runtime.stats import wilson_interval


def summary_row(rows: list[dict]) -> dict:
    """Average over tasks, with the interval of the pooled episodes."""
    n = sum(r["episodes"] for r in rows)
    k = sum(r["successes"] for r in rows)
    lo, hi = wilson_interval(k, n)
    return {"task": "average", "variation": rows[0]["variation"], "method": rows[0]["method"], "episodes": n,
            "successes": k, "success_rate": k / n, "ci95": [round(lo, 4), round(hi, 4)]}


def task_table(rows: list[dict], title: str | None = None) -> str:
    """Markdown: one row per task, then the pooled average."""
    lines = ([f"# {title}", ""] if title else []) + [
        "| task | variation | method | success | 95% CI | episodes |", "|---|---|---|---|---|---|"]
    for r in [*rows, summary_row(rows)]:
        lo, hi = r["ci95"]
        lines.append(f"| {r['task']} | {r['variation']} | {r['method']} | {r['success_rate']:.0%} "
                     f"| [{lo:.0%}, {hi:.0%}] | {r['episodes']} |")
    return "\n".join(lines) + "\n"


def cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['success_rate']:.0%} [{lo * 100:.0f}, {hi * 100:.0f}]"


def pivot_table(rows: list[dict]) -> str:
    """Markdown: one row per (variation, method), one column per task, the pooled average last."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["variation"], r["method"])].append(r)
    lines = ["| variation | method | " + " | ".join(tasks) + " | average | episodes |",
             "|---|---|" + "---|" * (len(tasks) + 2)]
    for (variation, method), part in groups.items():
        by_task = {r["task"]: r for r in part}
        avg = summary_row(part)
        cells = [cell(by_task[t]) if t in by_task else "-" for t in tasks]
        lines.append(f"| {variation} | {method} | " + " | ".join(cells) + f" | **{cell(avg)}** | {avg['episodes']} |")
    return "\n".join(lines)
