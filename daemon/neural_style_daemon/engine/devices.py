"""Choosing the compute device, what it computes fast, and its memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
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
            raise DeviceError(f"{name}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple MPS was asked for, but it is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions beat fp32 here: CUDA GPUs (tensor cores; bf16 needs Ampere or
    later, older cards emulate it), and CPUs with AMX or AVX-512 BF16 units, where oneDNN runs
    them at about three times the fp32 speed. Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private: may vanish
        return torch.backends.mkldnn.is_available() and any(
            getattr(cpu, probe, lambda: False)() for probe in probes
        )
    return False


def reset_peak_memory(device: torch.device) -> None:
    """Start the peak that `peak_memory_bytes` reports afresh: CUDA's allocator statistics;
    on a Linux CPU the kernel's peak resident size of the process (clear_refs 5), elsewhere
    nothing (the peak then covers the whole process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif device.type == "cpu":
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory since the last reset: allocated tensors on CUDA, the driver's total on MPS,
    and on the CPU the process's peak resident size (Linux: since the reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if device.type == "mps":
        return torch.mps.driver_allocated_memory()
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    try:
        import resource  # POSIX only
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a job on `device` can still take, where that is known: on CUDA, what the driver
    has free plus what the caching allocator holds unused; on a Linux CPU, what the kernel
    reckons it can give without swapping (MemAvailable); None elsewhere."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached
    if device.type != "cpu":
        return None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    return None


def free_unused_memory(device: torch.device) -> None:
    """Collect what a failed run left unreachable (cycles through its traceback's frames) and,
    on CUDA, hand the caching allocator's free blocks back, so that a retry finds them."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Freed memory at the top of the heap that malloc keeps rather than hands back (mallopt takes
# an int).
_KEPT_FREE_HEAP_BYTES = 2**31 - 1


def reuse_freed_cpu_memory() -> None:
    """Have glibc's malloc keep the memory of freed tensors for the next ones. By default it
    maps each large block afresh from the kernel and unmaps it when freed, so every large
    evaluation paid for page faults in the kernel (docs/benchmarks.md, "The engine's measured
    choices").
    With mmap off and a high trim threshold, large tensors come from the heap and are reused.
    `release_free_heap` still hands the freed pages back after a job. Process-wide, so the
    engine calls it only when it runs on the CPU; a no-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE_HEAP_BYTES)


def release_free_heap() -> None:
    """Hand freed heap pages back to the kernel (glibc's malloc_trim). Without it, a small
    long-lived tensor (a cached target) allocated after a job's large temporaries keeps their
    freed pages resident: a daemon on the CPU grew 3 to 4 MB per job that way. A no-op off
    glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
