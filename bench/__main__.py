"""Run the benchmark rows and write ``bench/results/latest.{md,json}``.

Every measurement runs in a fresh process (``bench.child``) with its own
folder. Within a row the entries take turns: each run measures every
entry once, in forward order on even runs and reverse order on odd ones,
so drift of the machine's speed affects pulse-trio and its peers alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import machine, plan, report

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SETUP_TIMEOUT_S = 1800.0


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts and one run: checks that every row runs, not the figures",
    )
    parser.add_argument(
        "--runs", type=int, help="runs of every entry (default: 3, or 1 with --quick)"
    )
    parser.add_argument(
        "--only", help="comma-separated row keys to run (default: every row)"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile one end-to-end run with pyinstrument (default: off with "
        "--quick or --update)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder for the database files (default: the system's temporary folder)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for latest.md and latest.json"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the rows run now in the existing latest.json, keeping "
        "the others, and the profile unless --profile is given",
    )
    return parser.parse_args(argv)


def _missing(entry: plan.Entry) -> str | None:
    """Return why *entry* cannot run here, or None if it can."""
    for module in entry.requires:
        if importlib.util.find_spec(module) is None:
            return f"Python package {module!r} is not installed"
    if entry.server is not None and not machine.reachable(entry.server):
        host, port = entry.server
        return f"no server accepts connections on {host}:{port}"
    return None


def _run_child(spec: dict[str, Any], timeout_s: float, log: Any) -> dict[str, Any]:
    """Run one measurement process and return its figures or its failure."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.child", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        log.write(f"--- {spec['case']}: timed out after {timeout_s:g} s\n")
        log.write(_text(exc.stderr))
        return {"error": f"timed out after {timeout_s:g} s"}
    wall_s = time.perf_counter() - started
    if completed.stderr:
        log.write(f"--- {spec['case']} {json.dumps(spec)}\n{completed.stderr}\n")
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit code {completed.returncode}: {tail[0]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_wall_s"] = wall_s
    result["load_average_1m"] = load_before
    return result


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _setup(row: plan.Row, built: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    """Build the files a row needs, once per invocation."""
    outputs = []
    for spec in row.setup:
        if spec["path"] in built:
            continue
        print(f"  building {spec['path']} ({spec['count']:,} jobs)", flush=True)
        result = _run_child(spec, SETUP_TIMEOUT_S, log)
        built[spec["path"]] = result
        outputs.append({**spec, "result": result})
        if "error" in result:
            raise RuntimeError(f"building {spec['path']} failed: {result['error']}")
    return outputs


def _run_row(
    row: plan.Row, runs: int, workdir: Path, built: dict[str, Any], log: Any
) -> dict[str, Any]:
    print(f"{row.key}: {row.title}", flush=True)
    setup = _setup(row, built, log)
    entries = []
    for entry in row.entries:
        reason = _missing(entry)
        if reason:
            print(f"  skipping {entry.system}: {reason}", flush=True)
        entries.append({"entry": entry, "skipped": reason, "runs": []})
    active = [item for item in entries if item["skipped"] is None]
    for run in range(runs):
        order = active if run % 2 == 0 else list(reversed(active))
        for item in order:
            entry: plan.Entry = item["entry"]
            folder = Path(
                tempfile.mkdtemp(prefix=f"{row.key}-{entry.key}-", dir=workdir)
            )
            spec = {"case": entry.case, "workdir": str(folder), **entry.params}
            result = _run_child(spec, entry.timeout_s, log)
            shutil.rmtree(folder, ignore_errors=True)
            item["runs"].append(result)
            print(
                f"  run {run + 1}/{runs} {entry.system}: {_brief(row, result)}",
                flush=True,
            )
    return {"row": row, "entries": entries, "setup": setup}


def _brief(row: plan.Row, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED ({result['error']})"
    parts = []
    for metric in row.metrics:
        value = report.lookup(result, metric.key)
        if value is not None:
            parts.append(f"{metric.label} {report.number(value)} {metric.unit}")
    return ", ".join(parts)


def _profile(workdir: Path, jobs: int, log: Any) -> dict[str, Any]:
    """Profile one end-to-end run at NORMAL with pyinstrument."""
    if importlib.util.find_spec("pyinstrument") is None:
        return {"skipped": "Python package 'pyinstrument' is not installed"}
    from . import profiling

    folder = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    spec = {
        "case": "cases_pulse.end_to_end",
        "workdir": str(folder),
        "count": jobs,
        "synchronous": "NORMAL",
        "profile_dir": str(folder),
    }
    print("profile: one end-to-end run under pyinstrument", flush=True)
    result = _run_child(spec, 1800.0, log)
    if "error" in result:
        return {"skipped": f"the profiled run failed: {result['error']}"}
    summary = {"run": result}
    for phase in ("drain", "enqueue"):
        summary[phase] = profiling.summarise(folder / f"pulse-{phase}.pyisession", jobs)
    shutil.rmtree(folder, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    sizes = plan.QUICK if args.quick else plan.FULL
    runs = args.runs or (1 if args.quick else 3)
    # A rerun of some rows keeps the profile of the full run unless asked.
    profile = args.profile
    if profile is None:
        profile = not (args.quick or args.update)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pulse-trio-bench-", dir=args.workdir))
    rows = plan.build(sizes, str(workdir))
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {row.key for row in rows}
        if unknown:
            known = ", ".join(row.key for row in rows)
            print(f"unknown row keys {sorted(unknown)}; choose from {known}")
            return 2
        rows = [row for row in rows if row.key in wanted]

    started = time.perf_counter()
    info = machine.describe(REPO, workdir)
    results = []
    built: dict[str, Any] = {}
    log_path = args.out / "latest.log"
    try:
        with log_path.open("w", encoding="utf-8") as log:
            for row in rows:
                results.append(_run_row(row, runs, workdir, built, log))
            profile_summary = _profile(workdir, sizes.jobs, log) if profile else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_at_end"] = os.getloadavg()
    loads = [
        run["load_average_1m"]
        for result in results
        for item in result["entries"]
        for run in item["runs"]
        if "load_average_1m" in run
    ]
    if loads:
        info["load_average_1m_median"] = statistics.median(loads)
        info["load_average_1m_max"] = max(loads)
    document = report.build(
        results,
        machine=info,
        mode="quick" if args.quick else "full",
        runs=runs,
        profile=profile_summary,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - started,
    )
    if args.update:
        document = report.merge(
            json.loads((args.out / "latest.json").read_text(encoding="utf-8")),
            document,
        )
    (args.out / "latest.json").write_text(
        json.dumps(document, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "latest.md").write_text(report.markdown(document), encoding="utf-8")
    print(f"wrote {args.out / 'latest.md'} and {args.out / 'latest.json'}")
    failures = report.failures(document)
    for failure in failures:
        print(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
