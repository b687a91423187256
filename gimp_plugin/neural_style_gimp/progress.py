"""What GIMP's progress bar says and how far it is, from the daemon's job events."""

from __future__ import annotations

from neural_style_protocol.durations import format_duration
from neural_style_protocol.messages import Accepted, Progress
from neural_style_protocol.restart import Resubmitted


class ProgressReport:
    """Text and fraction for the bar, over `layers` layers done one after another: each layer
    gets an equal part of the bar, filled by the daemon's pixel-weighted `work_done`."""

    def __init__(self, layers: int = 1) -> None:
        self.layers = max(1, layers)
        self.layer = 0  # 0-based: the layer being worked on
        self.fraction = 0.0

    def next_layer(self, index: int) -> None:
        self.layer = index
        self.fraction = index / self.layers

    def _prefix(self) -> str:
        return f"Layer {self.layer + 1}/{self.layers}: " if self.layers > 1 else ""

    def starting(self, what: str = "the layer") -> str:
        return f"{self._prefix()}Neural style: sending {what} to the style daemon"

    def update(self, event: object) -> str | None:
        """The text for a job event (and `fraction` moved on), or None for other events."""
        if isinstance(event, Progress):
            # Held just below the layer's end until its pixels arrive.
            done = min(event.work_done, 0.999)
            self.fraction = max(self.fraction, (self.layer + done) / self.layers)
            where = [f"frame {event.frame}/{event.frames}"] if event.frames else []
            if event.scales > 1 or not event.frames:  # a later frame has one scale
                where.append(f"scale {event.scale}/{event.scales}")
            where.append(f"step {event.iteration}/{event.iterations}")
            text = f"{self._prefix()}Neural style: {', '.join(where)}"
            if event.tiles:
                text += f", tile {event.tile}/{event.tiles}"
            if event.eta is not None and event.eta >= 1:
                text += f", about {format_duration(event.eta)} left"
            return text
        if isinstance(event, Accepted):
            if event.queue_position > 0:
                ahead = event.queue_position
                return (
                    f"{self._prefix()}Neural style: waiting for {ahead} other "
                    f"job{'s' if ahead > 1 else ''} on the daemon"
                )
            return f"{self._prefix()}Neural style: starting"
        if isinstance(event, Resubmitted):
            self.fraction = self.layer / self.layers  # the job starts again from zero
            return f"{self._prefix()}Neural style: the daemon restarted; running the job again"
        return None
