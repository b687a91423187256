"""What the plug-in's bridge costs against the direct path (`python -m measure.bridge_cost`
from the repository root): a daemon with random weights on the CPU, the same job (a layer of
the given size, processed at a small size so that the optimisation is short and the
result still comes back at the layer's size) run through a DirectLink and a BridgeLink in turn.

Prints, per path, the median time to open the link (for the bridge: starting its process), to
run a job and, of that, to move the job and its result through the bridge's pipes (the job's
time less the bridge's own timing of it), and the progress lines each path showed per second."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from neural_style_gimp.bridge_client import BridgeLink
from neural_style_gimp.daemon_link import DirectLink
from neural_style_gimp.png import encode_png
from neural_style_gimp.progress import ProgressReport
from neural_style_protocol.images import RawImage
from neural_style_protocol.params import JobParams, Preset

BRIDGE = [sys.executable, "-m", "neural_style_gimp.bridge"]


def _layer(side: int) -> RawImage:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
    return RawImage(pixels.tobytes(), side, side, 4)


def _style() -> bytes:
    rng = np.random.default_rng(1)
    return encode_png(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8).tobytes(), 64, 64)


def _run(open_link, layer: RawImage, style: bytes, params: JobParams, repeats: int) -> dict:
    opens, jobs, pipes, rates = [], [], [], []
    for _ in range(repeats):
        shown: list[float] = []
        started = time.perf_counter()
        link = open_link()
        opened = time.perf_counter()
        try:
            link.stylize(
                layer,
                [style],
                params,
                ProgressReport(),
                lambda *_, shown=shown: shown.append(time.perf_counter()),
            )
            ended = time.perf_counter()
            # The bridge times the job on its side; the rest is moving it through the pipes.
            pipes.append(ended - opened - getattr(link, "bridge_seconds", ended - opened))
        finally:
            link.close()
        opens.append(opened - started)
        jobs.append(ended - opened)
        rates.append(len(shown) / (ended - opened))
    return {
        "open_ms": 1000 * statistics.median(opens),
        "job_ms": 1000 * statistics.median(jobs),
        "pipe_ms": 1000 * statistics.median(pipes),
        "shown_per_s": statistics.median(rates),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.bridge_cost")
    parser.add_argument("--side", type=int, default=1024, help="layer side in pixels (1024)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args(argv)
    layer, style = _layer(args.side), _style()
    params = JobParams(preset=Preset.DRAFT, size=64, iterations=args.iterations)
    with tempfile.TemporaryDirectory() as runtime:
        os.environ["XDG_RUNTIME_DIR"] = runtime
        daemon = [sys.executable, "-m", "neural_style_daemon.cli"]
        subprocess.run([*daemon, "start", "--weights", "random", "--device", "cpu"], check=True)
        try:
            # One job first, so that both paths meet a warm daemon.
            _run(lambda: DirectLink.open("", None), layer, style, params, 1)
            rows = {}
            for name, open_link in (
                ("direct", lambda: DirectLink.open("", None)),
                ("bridge", lambda: BridgeLink.open(BRIDGE, "", None)),
            ):
                rows[name] = _run(open_link, layer, style, params, args.repeats)
        finally:
            subprocess.run([*daemon, "stop"], check=False)
    print(f"layer {args.side} x {args.side} RGBA, processed at 64 px, {args.iterations} steps")
    print("| path | open ms | job ms | of which the pipes ms | progress lines per s |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['open_ms']:.1f} | {row['job_ms']:.1f} | {row['pipe_ms']:.1f} "
            f"| {row['shown_per_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
