"""Identity of a running queue, and whether the owner of a job is alive.

Each call of :meth:`Pulse.run` is an owner with a random id, recorded in the
``pulse_owners`` table with its host, process id, process start time and a
lease that it renews while it runs. A running job names its owner. The job
is orphaned at once when the owner was on this host and its process is
gone, and when the owner was on another host once its lease has expired.
A process id alone can be reused by a later process, so the start time
recorded beside it must match too.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

# Owners alive in this process. A crash of the process clears it, and an
# owner id found in the database with this process's pid and start time but
# missing here belongs to an earlier run that ended without cleaning up.
_live_in_process: set[str] = set()


def _read_pid_namespace() -> str | None:
    """Return an id of this process's PID namespace and boot, or ``None``.

    Two processes see each other's process ids, and can check whether the
    other is alive, only within one PID namespace of one boot of one
    machine. Containers that share a host name (with host networking) have
    PID namespaces of their own, and a reboot reuses process ids. Outside
    Linux it is ``None``.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
    except OSError:
        return None
    return f"{namespace} boot:{boot_id}"


PID_NAMESPACE = _read_pid_namespace()


def process_start(pid: int) -> str | None:
    """Return an opaque start time of process *pid*, or ``None`` if unknown.

    On Linux it is the start time in clock ticks since boot from
    ``/proc/PID/stat``, and ``None`` once the process has exited, even
    while it is a zombie. Elsewhere it is always ``None``, and liveness
    falls back to whether the pid exists.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name in field 2 may contain spaces and parentheses, so the
    # fields are counted from the last closing parenthesis.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
        return None  # a zombie or exiting process is already dead
    return fields[19].decode()


@attrs.frozen
class Owner:
    """This process's identity as the owner of the jobs it runs."""

    id: str
    host: str
    pid: int
    process_start: str | None
    pid_namespace: str | None = None

    @classmethod
    def new(cls) -> Owner:
        pid = os.getpid()
        return cls(
            id=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=pid,
            process_start=process_start(pid),
            pid_namespace=PID_NAMESPACE,
        )

    def mark_live(self) -> None:
        _live_in_process.add(self.id)

    def mark_stopped(self) -> None:
        _live_in_process.discard(self.id)


def owner_is_dead(row: Mapping[str, Any] | None, now: int) -> bool:
    """Tell whether the owner described by a ``pulse_owners`` row is dead.

    A missing row means the owner is gone. On this host, in this PID
    namespace and boot, the process decides, not the lease: an owner whose
    process runs with the recorded start time is alive, and one whose
    process is gone, or whose pid now belongs to a later process, is dead
    at once. The lease is compared with the wall clock, and a jump of that
    clock would make live owners look expired. On other hosts, in other
    PID namespaces (containers with the same host name), and where no
    start time is known, an expired lease means dead.

    NOTE: so on this host a process that hangs, or that stopped its queue
    without recording the end of its runs, keeps their jobs until it exits.
    """
    if row is None:
        return True
    expired: bool = row["lease_until"] < now
    if row["host"] != socket.gethostname() or row["pid_namespace"] != PID_NAMESPACE:
        return expired
    pid: int = row["pid"]
    if pid == os.getpid():
        return row["id"] not in _live_in_process
    recorded: str | None = row["process_start"]
    if recorded is not None:
        return process_start(pid) != recorded
    return expired or not _pid_exists(pid)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
