"""`python -m measure.frames` (from the repository root): animation frames stylised one by one
against as a sequence (engine/frames.py), judged by flicker and steps.

Two short synthetic sequences from the shared photos: a pan (a crop sliding over the cat by a
few pixels a frame) and a moving object (a patch of the astronaut sliding over the coffee). Each
is stylised frame by frame (`independent`, each an ordinary job) and as a sequence at each
temporal weight asked. Flicker is the temporal warping error: the mean absolute difference, in
grey levels, between the result of frame t+1 and the result of frame t warped along the content
frames' flow, on the pixels the flow can follow (flow.warping_error). Use trained weights
(--weights PATH).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from neural_style_daemon.bench.inputs import SHARED_IMAGES
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.flow import grey, optical_flow, trusted_pixels, warp_array
from neural_style_daemon.engine.flow import warping_error as pair_error
from neural_style_daemon.engine.frames import stylize_frames
from neural_style_daemon.engine.stylize import StyleEngine
from neural_style_daemon.imageio import load_image

DEFAULT_STYLE = SHARED_IMAGES / "style/starry_night.jpg"


def _rgb(path: Path, height: int) -> np.ndarray:
    image = Image.fromarray(load_image(path, str(path))[..., :3])
    width = round(image.width * height / image.height)
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))


def pan(frames: int, step: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Crops of `size` (width, height) sliding right over the cat by `step` px a frame."""
    width, height = size
    photo = load_image(SHARED_IMAGES / "content/chelsea.png")[..., :3]
    wide = width + frames * step  # the photo's width that every crop fits in
    photo = _rgb(
        SHARED_IMAGES / "content/chelsea.png",
        max(height, -(-wide * photo.shape[0] // photo.shape[1])),
    )
    top = (photo.shape[0] - height) // 2
    return [photo[top : top + height, i * step : i * step + width].copy() for i in range(frames)]


def moving_object(frames: int, step: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The astronaut's face (a patch a third of the height) sliding right and down over the
    coffee."""
    width, height = size
    photo = _rgb(SHARED_IMAGES / "content/coffee.png", height)[:, :width]
    side = height // 3
    face = Image.fromarray(load_image(SHARED_IMAGES / "content/astronaut.png")[40:200, 160:320, :3])
    patch = np.asarray(face.resize((side, side), Image.Resampling.LANCZOS))
    out = []
    for i in range(frames):
        frame = photo.copy()
        top, left = height // 4 + i * step // 2, width // 5 + i * step
        frame[top : top + side, left : left + side] = patch
        out.append(frame)
    return out


@dataclass(frozen=True)
class Run:
    """One way of stylising a sequence: its flicker (per pair of frames and the mean), the
    steps of each frame, and its seconds."""

    name: str
    errors: list[float]
    steps: list[int]
    seconds: float

    @property
    def error(self) -> float:
        return float(np.mean(self.errors))


def warping_errors(contents: list[np.ndarray], results: list[np.ndarray]) -> list[float]:
    """The warping error of each pair of consecutive results, along the contents' flow."""
    errors = []
    for t in range(len(results) - 1):
        earlier, later = grey(contents[t]), grey(contents[t + 1])
        backward, forward = optical_flow(later, earlier), optical_flow(earlier, later)
        errors.append(
            pair_error(results[t], results[t + 1], backward, trusted_pixels(forward, backward))
        )
    return errors


def change_map(contents: list[np.ndarray], results: list[np.ndarray], t: int) -> np.ndarray:
    """What changed from result t-1 to result t beyond the motion, amplified 4 times, grey
    where the flow cannot follow."""
    earlier, later = grey(contents[t - 1]), grey(contents[t])
    backward, forward = optical_flow(later, earlier), optical_flow(earlier, later)
    warped = warp_array(results[t - 1].astype(np.float32), backward)
    change = np.abs(results[t].astype(np.float32) - warped).mean(-1) * 4
    change[trusted_pixels(forward, backward) < 0.5] = 128
    return np.dstack([np.clip(change, 0, 255).astype(np.uint8)] * 3)


def run(
    engine: StyleEngine,
    contents: list[np.ndarray],
    style: np.ndarray,
    params: StyleParams,
    weights: list[float],
) -> tuple[list[Run], dict[str, list[np.ndarray]]]:
    """Independent frames, then a sequence at each temporal weight; the runs and the images."""
    runs, images = [], {}
    start = time.perf_counter()
    independent = [engine.stylize(frame, [style], params) for frame in contents]
    seconds = time.perf_counter() - start
    images["independent"] = [result.image for result in independent]
    steps = [result.steps for result in independent]
    runs.append(Run("independent", warping_errors(contents, images["independent"]), steps, seconds))
    for weight in weights:
        name = f"sequence, temporal weight {weight:g}"
        start = time.perf_counter()
        sequence = stylize_frames(
            engine, contents, [style], params.with_overrides(temporal_weight=weight)
        )
        seconds = time.perf_counter() - start
        images[name] = sequence.images
        runs.append(Run(name, warping_errors(contents, sequence.images), sequence.steps, seconds))
    return runs, images


def shown_sequence(runs: list[Run]) -> str:
    """The sequence run the sheet shows: the one at the default temporal weight, if run."""
    default = f"sequence, temporal weight {StyleParams().temporal_weight:g}"
    return next((r.name for r in runs if r.name == default), runs[-1].name)


def sheet(
    contents: list[np.ndarray], images: dict[str, list[np.ndarray]], sequence: str
) -> Image.Image:
    """Frames 2 to 4 across; down: the independent results, what changed from the frame before
    beyond the motion, the sequence's results, and what changed in them."""
    columns = range(1, min(4, len(contents)))
    rows = []
    for name in ("independent", sequence):
        rows.append(np.concatenate([images[name][t] for t in columns], axis=1))
        rows.append(
            np.concatenate([change_map(contents, images[name], t) for t in columns], axis=1)
        )
    return Image.fromarray(np.concatenate(rows, axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.frames")
    parser.add_argument("--weights", required=True, help="a trained VGG16 (a path), or random")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--step", type=int, default=4, help="pixels of motion a frame (4)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=176)
    parser.add_argument("--preset", default="draft")
    parser.add_argument(
        "--temporal-weights",
        type=lambda text: [float(w) for w in text.split(",")],
        default=[StyleParams().temporal_weight],
    )
    parser.add_argument(
        "--sequences", default="pan,object", help="pan, object or both (pan,object)"
    )
    parser.add_argument("--out", type=Path, help="a folder for the sheets and runs.json")
    args = parser.parse_args(argv)
    size = (args.width, args.height)
    makers = {"pan": pan, "object": moving_object}
    style = _rgb(args.style, 512)
    engine = StyleEngine(args.weights, device="auto")
    params = StyleParams(preset=args.preset)
    report = {}
    for name in args.sequences.split(","):
        contents = makers[name](args.frames, args.step, size)
        runs, images = run(engine, contents, style, params, args.temporal_weights)
        print(
            f"{name}: {args.frames} frames {size[0]}x{size[1]}, {args.step} px a frame, "
            f"{args.preset}"
        )
        print(
            "| run | warping error | against independent | steps per frame "
            "| first, then mean | seconds |"
        )
        print("|---|---|---|---|---|---|")
        base = runs[0]
        for r in runs:
            later = float(np.mean(r.steps[1:]))
            print(
                f"| {r.name} | {r.error:.2f} | {r.error / base.error:.0%} | {np.mean(r.steps):.0f} "
                f"({np.mean(r.steps) / np.mean(base.steps):.0%}) | {r.steps[0]}, {later:.0f} "
                f"| {r.seconds:.0f} |"
            )
        report[name] = [asdict(r) | {"error": r.error} for r in runs]
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            sheet(contents, images, shown_sequence(runs)).save(args.out / f"{name}.png")
            for run_name, frames in images.items():
                for t, frame in enumerate(frames):
                    Image.fromarray(frame).save(
                        args.out / f"{name}-{run_name.replace(' ', '-').replace(',', '')}-{t}.png"
                    )
    if args.out is not None:
        (args.out / "runs.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
