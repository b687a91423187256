"""Times as people read them in progress text, the same on the command line and in GIMP."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """ "45 s", "3 min 05 s", "2 h 05 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"
