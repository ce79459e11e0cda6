"""A description of the machine and software that a benchmark ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "pulse-trio",
    "trio",
    "trio-util",
    "sqlite-utils",
    "attrs",
    "huey",
    "persist-queue",
    "procrastinate",
    "psycopg",
    "saq",
    "redis",
    "pyinstrument",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def filesystem_of(path: Path) -> str:
    """Return the file system type of the mount that contains *path*."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                mount_point = fields[1]
                inside = resolved == mount_point or resolved.startswith(
                    mount_point.rstrip("/") + "/"
                )
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, fields[2]
    except OSError:
        pass
    return kind


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(repo: Path, *args: str) -> str:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip()


def reachable(address: tuple[str, int], timeout: float = 1.0) -> bool:
    """Tell whether a TCP server accepts connections at *address*."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def describe(repo: Path, workdir: Path) -> dict[str, Any]:
    """Return the machine, the versions and the state of the repository."""
    changed = _git(repo, "status", "--porcelain", "--", "pulse_trio")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "executable": sys.executable,
        "workdir_filesystem": filesystem_of(workdir),
        "packages": _versions(),
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "pulse_trio_files_changed_since_commit": len(changed.splitlines()),
        "load_average_at_start": os.getloadavg(),
    }
