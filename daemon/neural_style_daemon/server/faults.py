"""Faults the worker can be told to inject, for tests of the daemon's recovery paths on a machine
without a GPU. Off unless the environment variable NEURAL_STYLE_FAULTS is set when the daemon
starts; nothing on the wire can turn one on. Imports no torch (the broker parses it).

The value is a comma-separated list of these words:

- ``oom_at_step=K``: the first attempt of every job raises CUDA's out-of-memory error after
  its K-th optimisation step (the retry runs clean). An attempt runs from the job's start or
  from the last such error: the engine's run of a scale again with a shorter L-BFGS history
  is one, as is the worker's run of the job at a smaller size;
- ``oom_attempts=N``: with ``oom_at_step``, the first N attempts of every job run out of
  memory, not only the first;
- ``fail_on_start``: the worker reports that the model could not be loaded, and exits;
- ``slow_start=SECONDS``: the worker sleeps this long before it loads the model;
- ``slow_steps=SECONDS``: every optimisation step takes at least this long (the worker sleeps
  in its cancel check), so that a tiny job lasts long enough to act on while it runs;
- ``ignore_cancel``: the worker never stops a running job when asked to.

For example ``NEURAL_STYLE_FAULTS="oom_at_step=2,slow_start=1.5"``. Anything else (an unknown
word, a missing or malformed value, a word twice) is refused when the daemon starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

FAULTS_ENV = "NEURAL_STYLE_FAULTS"


@dataclass(frozen=True)
class Faults:
    oom_at_step: int | None = None
    oom_attempts: int = 1
    fail_on_start: bool = False
    slow_start: float = 0.0  # seconds
    slow_steps: float = 0.0  # seconds a step takes at least
    ignore_cancel: bool = False


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("a step or attempt number counts from 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a finite number of seconds, 0 or more")
    return value


_VALUED = {
    "oom_at_step": _count,
    "oom_attempts": _count,
    "slow_start": _seconds,
    "slow_steps": _seconds,
}
_FLAGS = ("fail_on_start", "ignore_cancel")


def parse_faults(text: str) -> Faults:
    """The faults named in `text` (see the module's docstring); ValueError if malformed."""
    values: dict[str, object] = {}
    for word in (part.strip() for part in text.split(",")):
        if not word:
            continue
        name, has_value, raw = word.partition("=")
        if name in values:
            raise ValueError(f"{FAULTS_ENV}: {name!r} is named twice")
        if name in _FLAGS and not has_value:
            values[name] = True
        elif name in _VALUED and has_value:
            try:
                values[name] = _VALUED[name](raw)
            except ValueError as error:
                raise ValueError(f"{FAULTS_ENV}: {word!r}: {error}") from None
        else:
            known = ", ".join([f"{n}=VALUE" for n in _VALUED] + list(_FLAGS))
            raise ValueError(f"{FAULTS_ENV}: {word!r} is not a fault (known: {known})")
    # Each value was parsed by its field's own parser in _VALUED (or is a flag's True).
    return Faults(**values)  # type: ignore[arg-type]


def faults_from_env(environ: Mapping[str, str] = os.environ) -> Faults:
    """The faults the environment asks for; none when the variable is unset."""
    return parse_faults(environ.get(FAULTS_ENV, ""))
