"""Function-level summaries of pyinstrument sessions saved by a bench run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

# Frames in which the event loop waits for I/O or a timeout: time spent
# there is idle, not work.
IDLE_FUNCTIONS = {"epoll.poll", "EpollIOManager.get_events", "poll"}


def _key(frame: Any) -> str:
    name = frame.function
    if frame.class_name:
        name = f"{frame.class_name}.{name}"
    location = frame.file_path_short or "?"
    if frame.line_no:
        location = f"{location}:{frame.line_no}"
    return f"{name} ({location})"


def summarise(session_path: Path, jobs: int, limit: int = 15) -> dict[str, Any]:
    """Return the top functions of a session by self time and by total time.

    Self time is the time a function was on top of the stack; total time
    includes its callees and counts a recursive function once. Each share
    is a fraction of the whole session's wall time, and ``us_per_job``
    divides that time by *jobs*.
    """
    from pyinstrument.session import Session

    session = Session.load(session_path)
    root = session.root_frame()
    if root is None:
        return {"duration_s": 0.0, "self": [], "total": []}
    duration = root.time
    self_time: dict[str, float] = defaultdict(float)
    total_time: dict[str, float] = defaultdict(float)
    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        frame, ancestors = stack.pop()
        key = _key(frame)
        # pyinstrument puts a function's own time into a synthetic "[self]"
        # child frame; it belongs to the function itself.
        children = [child for child in frame.children if not child.is_synthetic]
        self_time[key] += frame.time - sum(child.time for child in children)
        if key not in ancestors:
            total_time[key] += frame.time
        inner = ancestors | {key}
        stack.extend((child, inner) for child in children)

    def table(times: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(times.items(), key=lambda item: -item[1])[:limit]
        return [
            {
                "function": key,
                "seconds": round(seconds, 4),
                "share": round(seconds / duration, 4),
                "us_per_job": round(seconds / jobs * 1e6, 2),
            }
            for key, seconds in ranked
        ]

    idle = sum(
        seconds
        for key, seconds in self_time.items()
        if key.split(" ", 1)[0] in IDLE_FUNCTIONS
    )
    library = {
        key: seconds
        for key, seconds in total_time.items()
        if "pulse_trio/" in key or "pulse_trio\\" in key
    }
    return {
        "duration_s": round(duration, 4),
        "jobs": jobs,
        "us_per_job": round(duration / jobs * 1e6, 2),
        "idle_share": round(idle / duration, 4) if duration else 0.0,
        "self": table(self_time),
        "total": table(total_time),
        "library_total": table(library),
        "text": session_text(session),
    }


def session_text(session: Any) -> str:
    """Render a session as pyinstrument's plain-text call tree."""
    from pyinstrument.renderers import ConsoleRenderer

    renderer = ConsoleRenderer(
        unicode=False,
        color=False,
        processor_options={"show_regex": r".*pulse_trio.*"},
    )
    text: str = renderer.render(session)
    return text
