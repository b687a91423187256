"""Choosing the compute device, and reading its peak memory."""

from __future__ import annotations

import sys

import torch

from ..errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; `cpu`, `cuda`, `cuda:N`, `mps` insist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was asked for, but no CUDA GPU is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"{name}: there are only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple MPS was asked for, but it is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory since the last reset: allocated tensors on CUDA, the driver's total on MPS,
    and on the CPU the whole process's peak resident size (there is no per-job figure)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if device.type == "mps":
        return torch.mps.driver_allocated_memory()
    try:
        import resource  # POSIX only
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
