"""Parsers of command-line values, and the error that a command reports.

Each parser raises :exc:`argparse.ArgumentTypeError` with a message that
names the value and shows a valid one, so argparse prints it after the
option name.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

import attrs

from ._config import JobPriority


class CommandError(Exception):
    """A command failed in a way its message explains; no traceback is shown."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_UNIT_ORDER = "wdhms"
_DURATION_HELP = "use a number of seconds or units w, d, h, m, s, such as 30s or 1h30m"
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``30s``, ``5m``, ``2h``, ``7d``, ``2w`` or ``1h30m``.

    A bare number is seconds. Units appear at most once each, largest first.
    """
    value = text.strip().lower()
    if not value:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: {_DURATION_HELP}")
    try:
        seconds = float(value)
    except ValueError:
        seconds = _parse_units(text, value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: it must be a finite number of seconds, "
            "0 or more"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: it is too long"
        ) from None


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
    """Parse an ISO 8601 date and time with a UTC offset or ``Z``."""
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
    return moment


def parse_payload(text: str) -> Any:
    """Parse the JSON text of a job payload."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid JSON payload {text!r}: {exc}. Quote the whole payload for "
            "the shell, and put strings in double quotes: '{\"user\": 42}' or "
            "'\"text\"'"
        ) from None


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


def parse_positive_int(text: str) -> int:
    """Parse an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use an integer >= 1")
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
