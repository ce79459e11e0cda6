"""Summaries of the runs: medians, ratios, targets, and the Markdown page."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable
from typing import Any

from . import plan

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def lookup(result: dict[str, Any], key: str) -> Any:
    """Return the value at a dotted *key* of a run's figures, or None."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def number(value: float) -> str:
    """Format a figure with a precision that suits its size."""
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    values = [lookup(run, key) for run in runs if "error" not in run]
    values = [value for value in values if isinstance(value, int | float)]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def _ratio(
    entries: dict[str, dict[str, Any]], entry: str, peer: str, key: str
) -> dict[str, Any] | None:
    mine = entries.get(entry, {}).get("summary", {}).get(key)
    theirs = entries.get(peer, {}).get("summary", {}).get(key)
    if not mine or not theirs or not theirs["median"]:
        return None
    pairs = zip(entries[entry]["runs"], entries[peer]["runs"], strict=False)
    per_run = []
    for own_run, peer_run in pairs:
        own = lookup(own_run, key)
        other = lookup(peer_run, key)
        if isinstance(own, int | float) and isinstance(other, int | float) and other:
            per_run.append(own / other)
    return {
        "entry": entry,
        "peer": peer,
        "metric": key,
        "median_ratio": mine["median"] / theirs["median"],
        "run_ratios": per_run,
    }


def _row_document(result: dict[str, Any]) -> dict[str, Any]:
    row: plan.Row = result["row"]
    entries: dict[str, dict[str, Any]] = {}
    for item in result["entries"]:
        entry: plan.Entry = item["entry"]
        runs = item["runs"]
        entries[entry.key] = {
            "key": entry.key,
            "system": entry.system,
            "case": entry.case,
            "params": entry.params,
            "skipped": item["skipped"],
            "runs": runs,
            "errors": [run["error"] for run in runs if "error" in run],
            "summary": {
                metric.key: summary
                for metric in row.metrics
                if (summary := _summary(runs, metric.key)) is not None
            },
        }
    ratios = []
    for key in entries:
        if key == row.reference:
            continue
        for metric in row.metrics:
            ratio = _ratio(entries, row.reference, key, metric.key)
            if ratio is not None:
                ratios.append(ratio)
    targets = [_judge(target, entries) for target in row.targets]
    return {
        "key": row.key,
        "title": row.title,
        "description": row.description,
        "reference": row.reference,
        "metrics": [
            {
                "key": metric.key,
                "label": metric.label,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
            }
            for metric in row.metrics
        ],
        "entries": list(entries.values()),
        "ratios": ratios,
        "targets": targets,
        "setup": result["setup"],
    }


def _judge(target: plan.Target, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    judged: dict[str, Any] = {
        "entry": target.entry,
        "system": entries.get(target.entry, {}).get("system", target.entry),
        "metric": target.metric,
        "op": target.op,
        "value": target.value,
        "peer": target.peer,
        "stat": target.stat,
        "aim": target.aim,
        "text": target.describe(),
        "measured": None,
        "met": None,
    }
    if target.peer is not None:
        ratio = _ratio(entries, target.entry, target.peer, target.metric)
        measured = None if ratio is None else ratio["median_ratio"]
    else:
        summary = entries.get(target.entry, {}).get("summary", {}).get(target.metric)
        measured = None if summary is None else summary[target.stat]
    if measured is not None:
        judged["measured"] = measured
        judged["met"] = OPERATORS[target.op](measured, target.value)
    return judged


def build(results: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """Return the JSON document of a whole benchmark invocation."""
    return {**fields, "rows": [_row_document(result) for result in results]}


def merge(previous: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Replace the rows of *previous* that *update* ran again.

    The other rows and the machine stay as they were, and so does the
    profile unless *update* has one. ``updates`` records when each rerun
    happened and on which commit.
    """
    if previous["mode"] != update["mode"] or previous["runs"] != update["runs"]:
        raise ValueError(
            f"cannot merge a {update['mode']} run with {update['runs']} run(s) into "
            f"a {previous['mode']} run with {previous['runs']}; run every row instead"
        )
    rerun = {row["key"]: row for row in update["rows"]}
    known = {row["key"] for row in previous["rows"]}
    merged = dict(previous)
    merged["rows"] = [rerun.pop(row["key"], row) for row in previous["rows"]]
    merged["rows"] += list(rerun.values())
    if update.get("profile"):
        merged["profile"] = update["profile"]
    merged["updates"] = [
        *previous.get("updates", []),
        {
            "generated": update["generated"],
            "rows": [row["key"] for row in update["rows"]],
            "added": [row["key"] for row in update["rows"] if row["key"] not in known],
            "git_commit": update["machine"]["git_commit"],
            "pulse_trio_files_changed_since_commit": update["machine"][
                "pulse_trio_files_changed_since_commit"
            ],
            "duration_s": update["duration_s"],
        },
    ]
    return merged


def failures(document: dict[str, Any]) -> list[str]:
    """List the runs that failed, as ``row / system: error``."""
    found = []
    for row in document["rows"]:
        for entry in row["entries"]:
            for error in entry["errors"]:
                found.append(f"{row['key']} / {entry['system']}: {error}")
    return found


# -- Markdown ------------------------------------------------------------


def _verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return "not measured"
    word = "met" if target["met"] else "missed"
    return f"aim {word}" if target["aim"] else word


def _cell(summary: dict[str, Any] | None, unit: str) -> str:
    if summary is None:
        return "-"
    median = number(summary["median"])
    if summary["runs"] == 1:
        return f"{median} {unit}"
    return f"{median} {unit} ({number(summary['min'])}-{number(summary['max'])})"


def ratio_text(ratio: float) -> str:
    """Format a ratio with two significant digits."""
    if ratio >= 10:
        return f"{ratio:.0f}x"
    if ratio >= 1:
        return f"{ratio:.2f}x"
    return f"{ratio:.2g}x"


def _jobs(entry: dict[str, Any]) -> str:
    params = entry["params"]
    done = [run["jobs"] for run in entry["runs"] if run.get("capped")]
    if done:
        return f"{statistics.median(done):,.0f} of {params['count']:,} (time cap)"
    for key in ("count", "samples", "drain"):
        if key in params:
            return f"{params[key]:,}"
    if "window_s" in params:
        return f"{params['window_s']:g} s"
    return "-"


def _targets_table(document: dict[str, Any]) -> list[str]:
    lines = [
        "| measure | system | target | measured | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in document["rows"]:
        units = {metric["key"]: metric for metric in row["metrics"]}
        for target in row["targets"]:
            metric = units[target["metric"]]
            if target["peer"] is None:
                bound = f"{target['op']} {number(target['value'])} {metric['unit']}"
                if target["stat"] != "median":
                    bound += f" ({target['stat']} of runs)"
                measured = (
                    "-"
                    if target["measured"] is None
                    else f"{number(target['measured'])} {metric['unit']}"
                )
            else:
                bound = f"{target['op']} {target['value']:g}x {target['peer']}"
                measured = (
                    "-"
                    if target["measured"] is None
                    else ratio_text(target["measured"])
                )
            label = metric["label"]
            lines.append(
                f"| {row['title']} ({label}) | {target['system']} | {bound} "
                f"| {measured} | {_verdict(target)} |"
            )
    return lines


def _row_section(row: dict[str, Any]) -> list[str]:
    metrics = row["metrics"]
    lines = [f"### {row['title']}", "", f"{row['description']}.", ""]
    header = ["system", "jobs"] + [metric["label"] for metric in metrics]
    header.append(f"{metrics[0]['label']} ratio, {row['reference']} / this")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    ratios = {
        ratio["peer"]: ratio
        for ratio in row["ratios"]
        if ratio["metric"] == metrics[0]["key"]
    }
    for entry in row["entries"]:
        if entry["skipped"]:
            cells = [entry["system"], "-", f"skipped: {entry['skipped']}"]
            cells += ["" for _ in metrics[1:]] + [""]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [entry["system"], _jobs(entry)]
        for metric in metrics:
            cells.append(_cell(entry["summary"].get(metric["key"]), metric["unit"]))
        ratio = ratios.get(entry["key"])
        cells.append("-" if ratio is None else ratio_text(ratio["median_ratio"]))
        if entry["errors"]:
            cells[0] += f" (failed runs: {'; '.join(entry['errors'])})"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _machine_lines(info: dict[str, Any]) -> list[str]:
    packages = ", ".join(
        f"{name} {version}" for name, version in info["packages"].items() if version
    )
    lines = [
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB",
        f"- {info['os']}, {info['python_implementation']} {info['python']}, "
        f"SQLite {info['sqlite']}, database files on {info['workdir_filesystem']}",
        f"- Packages: {packages}",
        f"- pulse-trio commit {info['git_commit'][:12] or 'unknown'}, "
        f"{info['pulse_trio_files_changed_since_commit']} files under pulse_trio/ "
        "changed since that commit",
    ]
    if "load_average_1m_median" in info:
        median = info["load_average_1m_median"]
        highest = info["load_average_1m_max"]
        lines.append(
            "- Load average (1 min) before each run: "
            f"median {median:.2f}, max {highest:.2f}"
        )
    return lines


def _rows_were(keys: list[str]) -> str:
    if len(keys) == 1:
        return f"row {keys[0]} was"
    return f"rows {', '.join(keys)} were"


def _update_lines(document: dict[str, Any]) -> list[str]:
    lines = []
    for update in document.get("updates", []):
        added = update.get("added", [])
        rerun = [key for key in update["rows"] if key not in added]
        parts = []
        if rerun:
            parts.append(f"{_rows_were(rerun)} run again")
        if added:
            parts.append(f"{_rows_were(added)} added")
        summary = " and ".join(parts)
        lines.append(
            f"{summary[0].upper()}{summary[1:]} at {update['generated']} on commit "
            f"{update['git_commit'][:12]} "
            f"({update['pulse_trio_files_changed_since_commit']} files under "
            "pulse_trio/ changed since that commit)."
        )
    return [*lines, ""] if lines else []


def _profile_line(item: dict[str, Any]) -> str:
    share = f"{item['share']:.1%}"
    return f"| `{item['function']}` | {share} | {item['us_per_job']:.1f} |"


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    if "skipped" in profile:
        return [f"Profile skipped: {profile['skipped']}.", ""]
    lines = []
    for phase in ("drain", "enqueue"):
        summary = profile[phase]
        lines += [
            f"### {phase.capitalize()} phase, {summary['jobs']:,} jobs",
            "",
            f"{summary['duration_s']:.2f} s under the profiler, "
            f"{summary['us_per_job']:.1f} µs per job, "
            f"{summary['idle_share']:.0%} of it waiting for I/O.",
            "",
            "| function (self time) | share | µs per job |",
            "| --- | --- | --- |",
        ]
        lines += [_profile_line(item) for item in summary["self"][:10]]
        lines += [
            "",
            "| pulse-trio function (total time, with callees) | share | µs per job |",
            "| --- | --- | --- |",
        ]
        lines += [_profile_line(item) for item in summary["library_total"][:10]]
        lines.append("")
    return lines


def markdown(document: dict[str, Any]) -> str:
    """Render the document as a Markdown page."""
    command = "python -m bench" + (" --quick" if document["mode"] == "quick" else "")
    minutes = document["duration_s"] / 60
    lines = [
        "# pulse-trio benchmark results",
        "",
        f"Generated {document['generated']} by `{command}`: {document['mode']} mode, "
        f"{document['runs']} run(s) of every entry, {minutes:.1f} min. "
        "Each cell is the median of the runs, with the minimum and maximum in "
        "brackets. A ratio divides pulse-trio's median by the other entry's median, "
        "both from this invocation.",
        "",
        *_update_lines(document),
        "## Machine",
        "",
        *_machine_lines(document["machine"]),
        "",
        "## Targets",
        "",
        *_targets_table(document),
        "",
        "## Figures",
        "",
    ]
    for row in document["rows"]:
        lines += _row_section(row)
    if document.get("profile"):
        lines += ["## Profile of one end-to-end run (NORMAL)", ""]
        lines += _profile_lines(document["profile"])
    return "\n".join(lines).rstrip() + "\n"
