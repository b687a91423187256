"""What else one benchmark arm measures besides time: its peak memory, and how busy the CPUs
were with other processes meanwhile (which makes the arm's times unreliable).

Peak memory is what the arm added at its peak to what was in use at its start.

CUDA counts allocated tensors exactly (torch.cuda.max_memory_allocated after a reset). On a
Linux CPU the kernel's peak resident size of the process, restarted at the arm's start
(engine.devices.reset_peak_memory), after malloc_trim has handed freed heap back: exact for the
pages touched, though it also counts freed memory malloc keeps for reuse.
"""

from __future__ import annotations

import os
import time

import torch

from ..engine.devices import peak_memory_bytes, release_free_heap, reset_peak_memory

_HOST = torch.device("cpu")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def resident_bytes() -> int:
    """The process's resident set size now, or 0 where /proc is missing (not Linux)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def busy_jiffies() -> tuple[int, int]:
    """(CPU time all processes spent busy, CPU time this process spent), in clock ticks;
    (0, 0) where /proc is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            # Fields after the parenthesised command name; utime and stime are the 12th, 13th.
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields[:8]) - idle, int(own[11]) + int(own[12])


class ArmMonitor:
    """Context manager: on exit, `peak_bytes` is the arm's peak memory over its start and
    `foreign_cpu` the share of all CPUs' time that other processes used during the arm."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self.foreign_cpu = 0.0
        self._cpu_start = (0, 0)
        self._clock_start = 0.0
        self._start = 0

    def __enter__(self) -> ArmMonitor:
        self._cpu_start, self._clock_start = busy_jiffies(), time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        release_free_heap()
        reset_peak_memory(_HOST)  # the process's resident peak (on MPS too, as before)
        self._start = resident_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self._measure_foreign_cpu()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        self.peak_bytes = max(0, peak_memory_bytes(_HOST) - self._start)

    def _measure_foreign_cpu(self) -> None:
        (all_end, own_end), (all_start, own_start) = busy_jiffies(), self._cpu_start
        seconds = time.perf_counter() - self._clock_start
        capacity = seconds * _CLOCK_TICKS * (os.cpu_count() or 1)
        foreign = (all_end - all_start) - (own_end - own_start)
        self.foreign_cpu = min(1.0, max(0.0, foreign / capacity)) if capacity > 0 else 0.0
