"""The regression verdict: a candidate's episodes against a baseline's, paired on the same scenes.

Within each (variation, method) group, episodes pair on (task, arm, seed): the same seed is the same scene,
so the paired difference cancels scene difficulty, and the exact McNemar test sees only the episodes whose
outcome changed. A group regresses when that test says the candidate is significantly worse; it is
non-inferior when the 95% interval of the difference stays above -margin; anything else is inconclusive
(more episodes would decide it). The two sides must hold the same episodes: a partial candidate is refused,
never compared on what it happens to have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vla_runtime.stats import mcnemar_exact

Z95 = 1.959964
SHOW = 5  # missing episodes listed in a refusal


@dataclass(frozen=True)
class Verdict:
    groups: list[dict]  # per (variation, method): rates, difference (points) and its ci95, p, status, tasks
    failed: bool  # any regression (strict: or any inconclusive group)
    markdown: str


def paired_interval(lost: int, won: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of the paired difference of proportions (candidate - baseline) from the discordant counts
    (`lost`: baseline-only successes, `won`: candidate-only), by the Agresti-Min adjusted Wald interval: 0.5
    added to each of the 2x2 table's cells, which keeps it honest at 0 discordant pairs where the plain Wald
    interval collapses to a point."""
    if n < 1 or lost < 0 or won < 0 or lost + won > n:
        raise ValueError(f"need n >= 1 and 0 <= lost + won <= n, got lost={lost} won={won} n={n}")
    m = n + 2
    p_lost, p_won = (lost + 0.5) / m, (won + 0.5) / m
    d = p_won - p_lost
    half = z * math.sqrt(max(0.0, p_lost + p_won - d * d) / m)
    return max(-1.0, d - half), min(1.0, d + half)


def compare(baseline: list[dict], candidate: list[dict], margin: float = 5.0, alpha: float = 0.05,
            strict: bool = False) -> Verdict:
    """Store records (`vla_app.store`) of both sides -> the verdict. `margin`: points of success the candidate
    may lose and still be non-inferior. ValueError when the sides do not hold the same groups and episodes."""
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number of points >= 0, got {margin}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    base, cand = _index(baseline, "baseline"), _index(candidate, "candidate")
    _check_paired(base, cand)
    groups = [_group(g, base[g], cand[g], margin, alpha) for g in base]
    failed = any(g["status"] == "regression" or (strict and g["status"] == "inconclusive") for g in groups)
    return Verdict(groups=groups, failed=failed, markdown=_markdown(groups, base, cand, failed, margin, alpha, strict))


def _index(records: list[dict], side: str) -> dict[tuple[str, str], dict]:
    """(variation, method) -> {"config_ids", "first": a record, "episodes": {(task, arm, seed): record}}."""
    if not records:
        raise ValueError(f"the {side} holds no episodes")
    groups: dict[tuple[str, str], dict] = {}
    for r in records:
        k = r["key"]
        g = groups.setdefault((k["variation"], k["method"]), {"config_ids": {}, "first": r, "episodes": {}})
        g["config_ids"][k["config_id"]] = g["config_ids"].get(k["config_id"], 0) + 1
        pair = (k["task"], k["arm"], k["seed"])
        if pair in g["episodes"]:
            raise ValueError(f"the {side} holds episode {k['variation']}/{k['method']} {_name(pair)} twice; "
                             f"de-duplicate it (vla report --merged-store)")
        g["episodes"][pair] = r
    for (variation, method), g in groups.items():
        if len(g["config_ids"]) > 1:
            ids = ", ".join(f"{c} ({n} episodes)" for c, n in g["config_ids"].items())
            raise ValueError(f"the {side}'s group {variation}/{method} mixes configurations {ids}: ambiguous; "
                             f"keep one configuration per variation and method")
    return groups


def _name(pair: tuple) -> str:
    task, arm, seed = pair
    return f"{task}/{arm} seed {seed}"


def _listed(pairs: list[tuple]) -> str:
    shown = ", ".join(_name(p) for p in pairs[:SHOW])
    return shown + (f" and {len(pairs) - SHOW} more" if len(pairs) > SHOW else "")


def _check_paired(base: dict, cand: dict) -> None:
    problems = []
    if lacking := [f"{v}/{m}" for v, m in base if (v, m) not in cand]:
        problems.append(f"the candidate lacks the baseline's group(s) {', '.join(lacking)}")
    if extra := [f"{v}/{m}" for v, m in cand if (v, m) not in base]:
        problems.append(f"the candidate holds group(s) {', '.join(extra)} the baseline lacks")
    for g in base:
        if g not in cand:
            continue
        b, c = base[g]["episodes"], cand[g]["episodes"]
        missing, unmatched = sorted(set(b) - set(c)), sorted(set(c) - set(b))
        if missing:
            problems.append(f"group {g[0]}/{g[1]}: {len(missing)} baseline episode(s) missing from the candidate: "
                            f"{_listed(missing)}")
        if unmatched:
            problems.append(f"group {g[0]}/{g[1]}: {len(unmatched)} candidate episode(s) not in the baseline: "
                            f"{_listed(unmatched)}")
    if problems:
        raise ValueError("cannot pair the candidate with the baseline (episodes pair on variation, method, task, "
                         "arm and seed): " + "; ".join(problems))


def _counts(pairs: list[tuple], b: dict, c: dict) -> dict:
    a = [int(b[p]["success"]) for p in pairs]
    x = [int(c[p]["success"]) for p in pairs]
    test = mcnemar_exact(a, x)
    return {"pairs": len(pairs), "baseline_successes": sum(a), "candidate_successes": sum(x),
            "baseline_rate": sum(a) / len(a), "candidate_rate": sum(x) / len(x),
            "lost": test["a_only"], "won": test["b_only"], "p": test["p"]}


def _group(g: tuple[str, str], base: dict, cand: dict, margin: float, alpha: float) -> dict:
    b, c = base["episodes"], cand["episodes"]
    pairs = sorted(b)
    row = {"variation": g[0], "method": g[1], "baseline_config_id": next(iter(base["config_ids"])),
           "candidate_config_id": next(iter(cand["config_ids"])), **_counts(pairs, b, c)}
    lo, hi = paired_interval(row["lost"], row["won"], row["pairs"])
    row["difference"] = 100 * (row["candidate_successes"] - row["baseline_successes"]) / row["pairs"]
    row["ci95"] = [round(100 * lo, 2), round(100 * hi, 2)]
    if row["p"] < alpha and row["won"] < row["lost"]:
        row["status"] = "regression"
    elif 100 * lo > -margin:
        row["status"] = "non-inferior"
    else:
        row["status"] = "inconclusive"
    tasks = list(dict.fromkeys(p[:2] for p in pairs))
    row["tasks"] = [{"task": t, "arm": arm, **_counts([p for p in pairs if p[:2] == (t, arm)], b, c)}
                    for t, arm in tasks]
    return row


def _differences(base: dict, cand: dict) -> list[str]:
    """`field`: baseline -> candidate, for the config fields and model fingerprints that differ."""
    out = []
    for what, get in (("", lambda r: r.get("config", {})),
                      ("model ", lambda r: r.get("provenance", {}).get("models", {}) or {})):
        x, y = get(base["first"]), get(cand["first"])
        out += [f"{what}`{k}`: {x.get(k, '-')} -> {y.get(k, '-')}" for k in sorted(set(x) | set(y))
                if x.get(k) != y.get(k)]
    return out


def _markdown(groups: list[dict], base: dict, cand: dict, failed: bool, margin: float, alpha: float,
              strict: bool) -> str:
    count = {s: sum(g["status"] == s for g in groups) for s in ("regression", "inconclusive", "non-inferior")}
    lines = [f"# Regression check: {'FAIL' if failed else 'PASS'}", "",
             f"{count['regression']} regression(s), {count['inconclusive']} inconclusive, {count['non-inferior']} "
             f"non-inferior of {len(groups)} group(s); margin {margin:g} points, alpha {alpha:g}"
             + (", strict (inconclusive fails)" if strict else "") + ".", "",
             "| variation | method | pairs | baseline | candidate | difference [95% CI] | lost | won | McNemar p "
             "| status |", "|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        status = g["status"] if g["status"] == "non-inferior" else f"**{g['status']}**"
        lines.append(f"| {g['variation']} | {g['method']} | {g['pairs']} | {g['baseline_rate']:.0%} "
                     f"| {g['candidate_rate']:.0%} | {g['difference']:+.1f} [{g['ci95'][0]:+.1f}, {g['ci95'][1]:+.1f}] "
                     f"| {g['lost']} | {g['won']} | {g['p']:.3g} | {status} |")
    lines += ["", "## Per task", "", "| variation | method | task | arm | pairs | baseline | candidate | lost | won |",
              "|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        lines += [f"| {g['variation']} | {g['method']} | {t['task']} | {t['arm']} | {t['pairs']} "
                  f"| {t['baseline_rate']:.0%} | {t['candidate_rate']:.0%} | {t['lost']} | {t['won']} |"
                  for t in g["tasks"]]
    lines += ["", "## Configuration", ""]
    for g in groups:
        key = (g["variation"], g["method"])
        ids = f"`{g['baseline_config_id']}`"
        if g["candidate_config_id"] != g["baseline_config_id"]:
            ids += f" -> `{g['candidate_config_id']}`"
        diff = _differences(base[key], cand[key])
        lines.append(f"- {g['variation']}/{g['method']}: config {ids}; "
                     + ("; ".join(diff) if diff else "no config field or model fingerprint differs"))
    lines += ["", "Episodes pair on (task, arm, seed) within each (variation, method) group; the difference is "
              "candidate - baseline in points with the Agresti-Min adjusted Wald 95% interval, p the exact two-sided "
              "McNemar test on the changed episodes (lost: baseline-only successes, won: candidate-only); a group "
              "regresses when p < alpha and the candidate is worse, is non-inferior when the interval's lower bound "
              "is above -margin, and is inconclusive otherwise."]
    return "\n".join(lines) + "\n"
