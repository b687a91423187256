"""What the live view costs a job (`python -m measure.live_cost --weights PATH` from the
repository root): a daemon on this machine's CPU runs the same job (a photo at the given sizes,
processed at its own size, so that each live image is the layer's size) with and without
`live_interval`, in turn, several times.

Prints, per size, the median CPU seconds the daemon's processes (broker and worker) spent on a
job without and with the live view and its cost in per cent (CPU time, so that other work on a
shared machine counts less than in the wall time, also shown), the live images a job got, and
when the first step's progress and the first live image reached the client (what a warm daemon
adds before the canvas can change; GIMP's own drawing comes on top)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neural_style_protocol.client import connect
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Progress, Result, new_job_id
from neural_style_protocol.params import JobParams, Preset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def _layer(path: Path, side: int) -> RawImage:
    """The photo with its long side at `side`, as a GIMP layer's pixels."""
    with Image.open(path) as image:
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        pixels = np.asarray(image.convert("RGBA").resize(size, Image.Resampling.LANCZOS))
    return RawImage(pixels.tobytes(), pixels.shape[1], pixels.shape[0], 4)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of process `pid` and its children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _job(client, layer: RawImage, style: bytes, params: JobParams) -> dict:
    """The job's own seconds, its live images, and when (from its start, the progress before
    the first step) the first live image and the first step's progress reached the client."""
    start = first_step = first_live = None
    lives = 0
    cpu_before = _cpu_seconds(client.info.pid)
    for event in client.submit(new_job_id(), layer, [style], params):
        now = time.perf_counter()
        if isinstance(event, Progress):
            start = start or now
            if event.live_image is not None:
                lives += 1
                first_live = first_live or now
            if event.iteration >= 1 and first_step is None:
                first_step = now
        elif isinstance(event, Result):
            assert start is not None and first_step is not None
            return {
                "cpu": _cpu_seconds(client.info.pid) - cpu_before,
                "seconds": event.stats.elapsed,
                "lives": lives,
                "live_at": None if first_live is None else first_live - start,
                "step_at": first_step - start,
            }
    raise RuntimeError("the job ended without a result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.live_cost")
    parser.add_argument("--weights", required=True, help="the trained VGG16 (a .pth file)")
    parser.add_argument("--sizes", default="512,1024", help="layer long sides (512,1024)")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per size and mode (3)")
    parser.add_argument("--iterations", type=int, default=30, help="steps per scale (30)")
    parser.add_argument("--content", type=Path, default=SHARED / "content" / "chelsea.png")
    parser.add_argument("--style", type=Path, default=SHARED / "style" / "starry_night.jpg")
    args = parser.parse_args(argv)
    style = args.style.read_bytes()
    rows = []
    with tempfile.TemporaryDirectory() as runtime:
        os.environ["XDG_RUNTIME_DIR"] = runtime
        daemon = [sys.executable, "-m", "neural_style_daemon.cli"]
        start = [*daemon, "start", "--weights", args.weights, "--device", "cpu"]
        subprocess.run(start, check=True)
        try:
            with connect() as client:
                for side in (int(text) for text in args.sizes.split(",")):
                    layer = _layer(args.content, side)
                    plain = JobParams(preset=Preset.DRAFT, iterations=args.iterations)
                    live = JobParams(
                        preset=Preset.DRAFT, iterations=args.iterations, live_interval=1.0
                    )
                    _job(client, layer, style, plain)  # warm: the targets cached, as in GIMP
                    runs: dict[str, list[dict]] = {"plain": [], "live": []}
                    for _ in range(args.repeats):  # in turn, so that drift falls on both
                        runs["plain"].append(_job(client, layer, style, plain))
                        runs["live"].append(_job(client, layer, style, live))
                    rows.append((layer, runs))
        finally:
            subprocess.run([*daemon, "stop"], check=False)
    print(f"draft, {args.iterations} steps a scale, {args.repeats} jobs each, in turn")
    print(
        "| layer | CPU s without | CPU s with | cost | wall s without | wall s with | "
        "live images | first step's progress | first live image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for layer, runs in rows:

        def median(key: str, mode: str, runs=runs) -> float:
            return statistics.median(run[key] for run in runs[mode])

        plain_cpu, live_cpu = median("cpu", "plain"), median("cpu", "live")
        print(
            f"| {layer.width} x {layer.height} | {plain_cpu:.1f} | {live_cpu:.1f} | "
            f"{100 * (live_cpu / plain_cpu - 1):+.1f} % | {median('seconds', 'plain'):.1f} | "
            f"{median('seconds', 'live'):.1f} | {median('lives', 'live'):g} | "
            f"{median('step_at', 'live'):.2f} s | {median('live_at', 'live'):.2f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
