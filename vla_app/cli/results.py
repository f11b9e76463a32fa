"""`vla report` and `vla regress`: what a result store holds, and whether a candidate regressed against a baseline."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from vla_app.cli import args as a

REPORT_FORMAT = "vla_steering.results_report"


def configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE",
                   help="result stores (JSON lines, `vla eval --store`); several are merged, each episode once")
    p.add_argument("--out", help="report folder: report.md, report.json, success.png")
    a.overwrite_arg(p, "vla report folder")
    p.add_argument("--merged-store", metavar="FILE",
                   help="also write the merged, de-duplicated store here (the first record of each episode kept)")
    p.set_defaults(func=report)


def configure_regress(p: argparse.ArgumentParser) -> None:
    from vla_app.regress import compare

    default = {k: v.default for k, v in inspect.signature(compare).parameters.items()}
    p.add_argument("--baseline", required=True, metavar="FILE", help="the baseline's result store")
    p.add_argument("--candidate", required=True, metavar="STORE", help="the candidate's result store")
    p.add_argument("--margin", type=a.nonnegative_float, default=default["margin"], metavar="POINTS",
                   help="success points the candidate may lose and still be non-inferior")
    p.add_argument("--alpha", type=float, default=default["alpha"], metavar="A",
                   help="significance level of the McNemar test that flags a regression")
    p.add_argument("--strict", action="store_true", help="an inconclusive group fails too")
    p.add_argument("--out", metavar="FILE.md", help="also write the verdict here")
    p.set_defaults(func=regress)


def _stores_exist(paths: list[str], what: str) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{what} {', '.join(missing)} not found (or not a file)")


def _inside(path: str | Path, folder: str | Path) -> bool:
    p, f = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return p == f or f in p.parents


def report(args: argparse.Namespace) -> int:
    """Every path is checked before the stores are read; the folder is written beside and renamed into place."""
    from vla_app.store import deduplicate, merge_stores
    from vla_runtime.io import check_output_dir, check_output_file, manifest_is, staged_dir

    _stores_exist(args.stores, "result store")
    if args.out is None and args.merged_store is None:
        raise ValueError("give --out DIR (the report), --merged-store FILE (the merged store), or both")
    if args.out is not None:
        check_output_dir(args.out, manifest_is("report.json", "format", REPORT_FORMAT), "vla report folder",
                         inputs=args.stores, overwrite=args.overwrite)
    if args.merged_store is not None:
        check_output_file(args.merged_store, "--merged-store")
        if args.out is not None and _inside(args.merged_store, args.out):
            raise ValueError(f"--merged-store {args.merged_store} is inside --out {args.out}, which is replaced")
        if any(_inside(args.merged_store, s) for s in args.stores):
            raise ValueError(f"--merged-store {args.merged_store} is one of the input stores; give a new file")
    records, duplicates, conflicts = deduplicate(_read(args.stores))
    if not records:
        raise ValueError(f"{', '.join(args.stores)} hold(s) no episodes")
    if args.merged_store is not None:
        print(json.dumps(merge_stores(args.stores, args.merged_store)))
    if args.out is None:
        return 0
    out = Path(args.out)
    markdown, summary = build_report(records, args.stores, duplicates, conflicts)
    with staged_dir(out) as tmp:
        (tmp / "report.md").write_text(markdown)
        (tmp / "report.json").write_text(json.dumps({"format": REPORT_FORMAT, **summary}, indent=2) + "\n")
        write_plot(summary["rows"], tmp / "success.png")
    print(markdown)
    return 0


def _read(stores: list[str]) -> list[dict]:
    from vla_app.store import ResultStore

    return [r for s in stores for r in ResultStore(s).records()]


def labelled_rows(records: list[dict]) -> list[dict]:
    """`store.rows`, with the config id (and arm) added to the method's label where one (variation, method)
    holds several, so the tables, which group by variation and method, never merge two configurations."""
    from vla_app.store import rows

    out = rows(records)
    seen: dict[tuple, dict[str, set]] = defaultdict(lambda: {"config_id": set(), "arm": set()})
    for r in out:
        for field in ("config_id", "arm"):
            seen[(r["variation"], r["method"])][field].add(r[field])
    for r in out:
        extra = [r[f] for f, values in seen[(r["variation"], r["method"])].items() if len(values) > 1]
        r["label"] = f"{r['method']} ({', '.join(extra)})" if extra else r["method"]
    return out


def build_report(records: list[dict], stores: list[str], duplicates: int = 0, conflicts: int = 0) -> tuple[str, dict]:
    """-> (report.md, the summary report.json holds: rows, provenance)."""
    from vla_app.report import pivot_table, task_table

    rows = labelled_rows(records)
    shown = [{**r, "method": r["label"]} for r in rows]
    configs = {r["key"]["config_id"]: r.get("config", {}) for r in records}
    lines = [f"# vla report: {', '.join(stores)}", "",
             f"{len(records)} episodes in {len({(r['variation'], r['label']) for r in rows})} (variation, method) "
             f"group(s)" + (f"; {duplicates} duplicate record(s) dropped ({conflicts} with another outcome, the "
                            f"first kept)" if duplicates else "") + ".", "",
             "## Success by variation and method", "", pivot_table(shown), "", "## Per task", ""]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in shown:
        groups[(r["variation"], r["method"])].append(r)
    for (variation, method), part in groups.items():
        ids = list(dict.fromkeys(r["config_id"] for r in part))
        lines += [f"### {variation} / {method}", "", task_table(part)]
        lines += [f"config `{i}`: `{json.dumps(configs[i], sort_keys=True)}`" for i in ids] + [""]
    provenance_lines, provenance = provenance_section(records)
    lines += provenance_lines
    return "\n".join(lines) + "\n", {"stores": list(stores), "duplicates": duplicates, "conflicts": conflicts,
                                     "rows": rows, "provenance": provenance}


def provenance_section(records: list[dict], running: tuple[str, bool] | None = None) -> tuple[list[str], dict]:
    """The code revisions and model fingerprints the records came from, with a WARNING when they mix
    revisions, differ from the running code's (`running`, default `store.code_revision()`) or came from
    a tree with uncommitted changes."""
    from vla_app.store import code_revision

    sha, dirty = running or code_revision()
    prov = [r.get("provenance", {}) for r in records]
    revisions = Counter(p.get("revision", "unknown") for p in prov)
    dirty_count = sum(bool(p.get("dirty")) for p in prov)
    models: Counter = Counter((name, fp) for p in prov for name, fp in sorted((p.get("models") or {}).items()))
    notes = []
    if len(revisions) > 1:
        notes.append(f"**WARNING**: the records mix {len(revisions)} code revisions: "
                     + ", ".join(f"{rev} ({n} records)" for rev, n in revisions.most_common()) + ".")
    if sha == "unknown":
        notes.append("The running code is not a git checkout: the records' revisions cannot be checked against it.")
    elif other := {rev: n for rev, n in revisions.items() if rev != sha}:
        notes.append(f"**WARNING**: {sum(other.values())} record(s) come from another revision than the running "
                     f"code's ({sha}{', dirty' if dirty else ''}): "
                     + ", ".join(f"{rev} ({n} records)" for rev, n in other.items()) + ".")
    if dirty_count:
        notes.append(f"**WARNING**: {dirty_count} record(s) were produced by a tree with uncommitted changes: their "
                     f"revision does not name their code.")
    lines = ["## Provenance", "", *(line for note in notes for line in (note, "")),
             "| revision | records |", "|---|---|", *(f"| {rev} | {n} |" for rev, n in revisions.most_common()), "",
             "| model | fingerprint | records |", "|---|---|---|",
             *(f"| {name} | {fp} | {n} |" for (name, fp), n in sorted(models.items())), ""]
    summary = {"running": {"revision": sha, "dirty": dirty}, "revisions": dict(revisions), "dirty": dirty_count,
               "models": [{"model": name, "fingerprint": fp, "records": n} for (name, fp), n in sorted(models.items())]}
    return lines, summary


def write_plot(rows: list[dict], path: Path) -> Path:
    """Bars of success per task, one per (variation, method) label, with the Wilson 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    series = list(dict.fromkeys((r["variation"], r["label"]) for r in rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(series) / 3)), 4.5))
    for i, (variation, label) in enumerate(series):
        part = {r["task"]: r for r in rows if (r["variation"], r["label"]) == (variation, label)}
        xs = [j + (i - (len(series) - 1) / 2) * width for j, t in enumerate(tasks) if t in part]
        rates = [part[t]["success_rate"] for t in tasks if t in part]
        err = [[part[t]["success_rate"] - part[t]["ci95"][0] for t in tasks if t in part],
               [part[t]["ci95"][1] - part[t]["success_rate"] for t in tasks if t in part]]
        ax.bar(xs, rates, width, yerr=err, capsize=3, label=f"{variation} / {label}")
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="success rate", title="success per task (Wilson 95% intervals)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _side(path: str, side: str) -> list[dict]:
    from vla_app.store import ResultStore, deduplicate

    records, duplicates, conflicts = deduplicate(ResultStore(path).records())
    if conflicts:
        raise ValueError(f"the {side} {path} holds {conflicts} episode(s) stored twice with different outcomes; "
                         f"decide which to keep (vla report --merged-store keeps the first)")
    if duplicates:
        print(f"vla: note: the {side} {path} holds {duplicates} duplicate record(s); each episode counted once",
              file=sys.stderr)
    return records


def regress(args: argparse.Namespace) -> int:
    """Exit 1 when the candidate regressed (strict: or is inconclusive), 0 otherwise; 2 on a refusal."""
    from vla_app.regress import compare
    from vla_runtime.io import atomic_write_text, check_output_file

    _stores_exist([args.baseline], "--baseline")
    _stores_exist([args.candidate], "--candidate")
    if args.out:
        check_output_file(args.out, "--out")
        if any(_inside(args.out, s) for s in (args.baseline, args.candidate)):
            raise ValueError(f"--out {args.out} is an input store; give a new file")
    verdict = compare(_side(args.baseline, "baseline"), _side(args.candidate, "candidate"), margin=args.margin,
                      alpha=args.alpha, strict=args.strict)
    print(verdict.markdown)
    if args.out:
        atomic_write_text(args.out, verdict.markdown)
    return 1 if verdict.failed else 0
