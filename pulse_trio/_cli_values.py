"""Parsers of command-line values, and the errors that a command reports.

Each parser raises :exc:`argparse.ArgumentTypeError` with a message that
names the value and shows a valid one, so argparse prints it after the
option name.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import attrs

from . import JobConfig, JobPriority


class CommandError(Exception):
    """A command failed in a way its message explains; no traceback is shown."""


class UsageError(CommandError):
    """An argument is invalid in a way that only the queue can check.

    The command line exits with status 2 for it, as for the errors that
    argparse reports.
    """


MAX_DURATION = timedelta(days=366_000)
"""Longest duration accepted, about 1,000 years.

It equals the maximum that :class:`~pulse_trio.JobConfig` and the methods of
:class:`~pulse_trio.Pulse` accept for every duration, so that a value over
it is rejected while the arguments are parsed.
"""

# The range of due times that Pulse.schedule() accepts, bounds included: it
# ends a day inside the range of Python datetimes, which is the years 1 to
# 9999.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=UTC)

MAX_PAYLOAD_SHOWN = 60
"""Characters of a rejected payload repeated in its error message."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_UNIT_ORDER = "wdhms"
_DURATION_HELP = "use a number of seconds or units w, d, h, m, s, such as 30s or 1h30m"
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``30s``, ``5m``, ``2h``, ``7d``, ``2w`` or ``1h30m``.

    A bare number is seconds. Units appear at most once each, largest first.
    The value must be at most :data:`MAX_DURATION`.
    """
    value = text.strip().lower()
    if not value:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: {_DURATION_HELP}")
    try:
        seconds = float(value)
    except ValueError:
        seconds = _parse_units(text, value)
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: it must be a finite number of seconds, "
            "0 or more"
        )
    if seconds > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: the maximum is {MAX_DURATION.days}d "
            "(about 1,000 years)"
        )
    return timedelta(seconds=seconds)


MIN_WATCH_INTERVAL = timedelta(seconds=0.1)
"""Shortest refresh interval of ``stats --watch``, which keeps the CPU use
of a watch low."""


def parse_watch_interval(text: str) -> timedelta:
    """Parse a duration of at least :data:`MIN_WATCH_INTERVAL`."""
    interval = parse_duration(text)
    if interval < MIN_WATCH_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"invalid interval {text!r}: it must be at least "
            f"{MIN_WATCH_INTERVAL.total_seconds():g} seconds, such as 2 or 0.5"
        )
    return interval


def parse_timeout(text: str) -> timedelta:
    """Parse a time limit of a job run: a duration of at least 1 microsecond."""
    timeout = parse_duration(text)
    if timeout < timedelta(microseconds=1):
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: it must be at least 1 microsecond, such "
            "as 30s or 5m. Pass --no-timeout for no time limit"
        )
    return timeout


def _parse_units(text: str, value: str) -> float:
    position = 0
    seconds = 0.0
    previous = -1
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        number, unit = match.groups()
        rank = _UNIT_ORDER.index(unit)
        if rank <= previous:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r}: give each unit once, largest first, "
                "such as 1h30m"
            )
        previous = rank
        seconds += float(number) * _UNIT_SECONDS[unit]
        position = match.end()
    if position != len(value) or position == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: {_DURATION_HELP}")
    return seconds


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date and time with a UTC offset or ``Z``.

    The time must lie from :data:`EARLIEST_TIME` to :data:`LATEST_TIME`.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601 with a UTC offset, such as "
            "2030-06-01T09:00:00Z or 2030-06-01T11:00:00+02:00"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: it has no UTC offset, so it is ambiguous; "
            f"add Z for UTC ({moment.isoformat()}Z) or an offset such as +02:00"
        )
    # Aware datetimes compare as UTC instants, without the overflow that
    # converting 0001-01-01T00:00+01:00 to UTC would raise.
    if not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: it must be from {_iso_utc(EARLIEST_TIME)} "
            f"to {_iso_utc(LATEST_TIME)}"
        )
    return moment


def _iso_utc(moment: datetime) -> str:
    # strftime("%Y") does not pad the year 1 to four digits on every system.
    return moment.isoformat().replace("+00:00", "Z")


def parse_payload(text: str) -> Any:
    """Parse the JSON text of a job payload.

    NaN and Infinity are rejected because they are not JSON, and so are
    numbers beyond the range of a float. Python's parser would turn both
    into floats that the queue cannot store.
    """
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_finite_float
        )
    except _UnsupportedNumber as exc:
        raise argparse.ArgumentTypeError(
            f"invalid JSON payload {_shorten(text)}: {exc}"
        ) from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid JSON payload {_shorten(text)}: {exc}. Quote the whole "
            "payload for the shell, and put strings in double quotes: "
            "'{\"user\": 42}' or '\"text\"'"
        ) from None
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"invalid JSON payload {_shorten(text)}: it is nested too deeply "
            "for Python's JSON parser, so flatten it"
        ) from None
    except ValueError as exc:
        # An integer of more digits than Python converts (4300 by default).
        raise argparse.ArgumentTypeError(
            f"invalid JSON payload {_shorten(text)}: {exc}"
        ) from None


class _UnsupportedNumber(Exception):
    """A number in a payload that JSON has no value for."""


def _reject_constant(name: str) -> NoReturn:
    raise _UnsupportedNumber(
        f"JSON has no number {name}, so pass a finite number, or a string such "
        f"as '\"{name}\"'"
    )


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _UnsupportedNumber(
            f"JSON has no number {text} that fits a 64-bit float (the maximum "
            "is about 1.8e308), so pass a smaller number, or a string"
        )
    return value


def _shorten(text: str) -> str:
    if len(text) <= MAX_PAYLOAD_SHOWN:
        return repr(text)
    return repr(text[:MAX_PAYLOAD_SHOWN]) + f"... ({len(text)} characters)"


def parse_job_name(text: str) -> str:
    """Parse a job name, rejecting an empty or blank one.

    The queue checks the other rules when it stores the job.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"invalid job name {text!r}: it is empty or blank, so pass the name "
            "that a worker's handler is registered under"
        )
    return text


def parse_priority(text: str) -> JobPriority:
    """Parse a priority name (``low`` to ``critical``) or its number."""
    value = text.strip()
    if value.isdigit():
        try:
            return JobPriority(int(value))
        except ValueError:
            pass
    if value.upper() in JobPriority.__members__:
        return JobPriority[value.upper()]
    choices = ", ".join(f"{p.name.lower()} ({p.value})" for p in JobPriority)
    raise argparse.ArgumentTypeError(f"invalid priority {text!r}: use one of {choices}")


def int_parser(minimum: int, maximum: int) -> Callable[[str], int]:
    """Return a parser of an integer from *minimum* to *maximum*."""

    def parse_int(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: use an integer from {minimum} to {maximum}"
            )
        return value

    return parse_int


def parse_max_retries(text: str) -> int:
    """Parse the retries of a job after its first failed run, as
    :class:`~pulse_trio.JobConfig` accepts them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: use an integer of 0 or more, such as 3"
        ) from None
    try:
        JobConfig(max_retries=value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {exc}") from None
    return value


@attrs.frozen
class AppPath:
    """``module:attribute``, naming a Pulse or a function that returns one."""

    module: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


def parse_app_path(text: str) -> AppPath:
    """Parse ``package.module:attribute``; the attribute may be dotted."""
    module, colon, attribute = text.partition(":")
    if (
        not colon
        or not _IDENTIFIER_PATH.fullmatch(module)
        or not _IDENTIFIER_PATH.fullmatch(attribute)
    ):
        raise argparse.ArgumentTypeError(
            f"invalid app {text!r}: use MODULE:ATTRIBUTE, such as myapp.jobs:pulse "
            "or myapp.jobs:make_pulse"
        )
    return AppPath(module, attribute)
