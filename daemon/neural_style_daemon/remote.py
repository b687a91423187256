"""`neural-style stylize` and `stylize-frames` through a running daemon: the same options and
output, with the model (and the decoded styles) already warm. Options the protocol does not
carry, or an explicit --weights or --device, keep the job in this process."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neural_style_protocol.client import DaemonClient, JobStream, Resubmitted, connect
from neural_style_protocol.errors import ClientError, DaemonUnavailable, ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Error, Progress, Result, new_job_id
from neural_style_protocol.params import JobParams

from .console import EXIT_INTERRUPTED, CancelOnInterrupt, ProgressBar
from .errors import DaemonError, InvalidInputError
from .imageio import load_image, output_format, save_image
from .region_masks import decoded_style_size, load_job_masks

log = logging.getLogger(__name__)

PING_TIMEOUT = 1.0  # seconds: a daemon slower than this to answer a ping is not used
# Options the wire does not carry, by their argparse dest (a StyleParams field but for
# save_every: for a single image the daemon sends none before the result).
_LOCAL_ONLY = {
    "initial_iterations": "--initial-iterations",
    "min_size": "--min-size",
    "tolerance": "--tolerance",
    "learning_rate": "--learning-rate",
    "lbfgs_history": "--lbfgs-history",
    "style_upscale": "--style-upscale",
    "content_layers": "--content-layers",
    "style_layers": "--style-layers",
    "style_layer_weights": "--style-layer-weights",
    "temporal_weight": "--temporal-weight",
    "save_every": "--save-every",
}
# JobParams fields set straight from the option of the same name when it is given.
_SAME_NAME = (
    "preset",
    "strength",
    "size",
    "iterations",
    "seed",
    "style_scale",
    "tv_weight",
    "content_weight",
    "style_weight",
    "preserve_colors",
    "optimizer",
    "tile_size",
    "max_memory",
)


def local_only_options(args: argparse.Namespace) -> list[str]:
    """The options given that only the in-process engine honours."""
    given = [flag for name, flag in _LOCAL_ONLY.items() if getattr(args, name, None) is not None]
    if args.init not in ("content", "noise"):
        given.append("--init PATH")
    if args.weights != "imagenet":
        given.append("--weights")  # the daemon uses its own, and cannot say which
    if args.device != "auto":
        given.append("--device")
    return given


def daemon_for(args: argparse.Namespace) -> DaemonClient | None:
    """A running daemon that can do what `args` ask, or None (the reason logged)."""
    local = local_only_options(args)
    if local:
        log.info("running in this process: the daemon does not take %s", ", ".join(local))
        return None
    try:
        return connect(timeout=PING_TIMEOUT)
    except DaemonUnavailable as error:
        log.info("running in this process: %s", error)
        return None


def job_params(args: argparse.Namespace) -> JobParams:
    """The wire parameters for the stylize options."""
    values: dict[str, object] = {
        name: getattr(args, name) for name in _SAME_NAME if getattr(args, name, None) is not None
    }
    if args.style_blend is not None:
        values["style_weights"] = tuple(args.style_blend)
    values["init"] = args.init
    try:
        # JobParams checks each value's type and range itself (ProtocolError below).
        return JobParams(**values)  # type: ignore[arg-type]
    except ProtocolError as error:
        raise InvalidInputError(error.message) from None


def _read_style(path: Path, index: int) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"style image {index} ({path}): file not found") from None
    except OSError as error:
        raise InvalidInputError(f"style image {index} ({path}): {error.strerror}") from None


def _as_grey(masks: list[np.ndarray | None] | None) -> tuple[RawImage | None, ...]:
    """The masks as the wire carries them: 1-channel RawImages, () for none."""
    if masks is None:
        return ()
    return tuple(
        None
        if mask is None
        else RawImage(np.ascontiguousarray(mask).tobytes(), mask.shape[1], mask.shape[0], 1)
        for mask in masks
    )


def _as_rgba(image: np.ndarray) -> RawImage:
    if image.shape[2] == 3:
        opaque = np.full((*image.shape[:2], 1), 255, np.uint8)
        image = np.concatenate([image, opaque], axis=2)
    height, width = image.shape[:2]
    return RawImage(np.ascontiguousarray(image).tobytes(), width, height, 4)


def stylize_with_daemon(args: argparse.Namespace, client: DaemonClient) -> int:
    """Run the job on the daemon, with the same progress bar, Ctrl-C and output as locally."""
    params = job_params(args)
    output_format(args.output)
    if not args.output.parent.is_dir():
        raise InvalidInputError(f"output folder does not exist: {args.output.parent}")
    content = load_image(args.content, "content image")
    styles = [_read_style(path, index) for index, path in enumerate(args.styles, 1)]
    # Checked here, so that a wrong file is named; the styles are decoded for their sizes
    # only where a source mask needs them.
    masks = load_job_masks(
        args,
        (content.shape[1], content.shape[0]),
        lambda index: decoded_style_size(args.styles[index], index),
    )
    with ProgressBar(disabled=args.quiet) as bar, CancelOnInterrupt() as interrupt:
        try:
            # resubmit: a daemon restarted meanwhile (`stop` then `start`, or a crash and a
            # new `start`) gets the same job again, so the user still gets the image.
            stream = client.submit(
                new_job_id(),
                _as_rgba(content),
                styles,
                params,
                style_masks=_as_grey(masks.regions),
                style_source_masks=_as_grey(masks.sources),
                should_cancel=interrupt.requested,
                resubmit=True,
            )
            result = _follow(stream, bar)
        except ProtocolError as error:  # a job the protocol refuses to carry (before sending)
            raise InvalidInputError(error.message) from None
        except ClientError as error:
            raise DaemonError(str(error)) from None
    if result is None:
        print("interrupted before the job started: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    pixels = np.frombuffer(result.image.data, np.uint8).reshape(
        result.image.height, result.image.width, 4
    )
    save_image(pixels if content.shape[2] == 4 else pixels[..., :3], args.output)
    for warning in result.warnings:  # what the daemon changed to finish (a smaller size, say)
        log.warning("%s", warning)
    if result.cancelled:
        print(
            f"interrupted: saved the image after {result.stats.steps} steps to {args.output}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not args.quiet:
        reused = result.stats.target_cache_hits
        warm = f"; {reused} style and content targets reused from earlier jobs" if reused else ""
        print(
            f"wrote {args.output} ({result.stats.steps} steps, {result.stats.elapsed:.1f} s, "
            f"on the daemon at {client.info.endpoint}{warm})",
            file=sys.stderr,
        )
    return 0


def stylize_frames_with_daemon(
    args: argparse.Namespace, client: DaemonClient, paths: list[Path]
) -> int:
    """`stylize-frames` as one job on the daemon: each frame written to its path in `paths` as
    soon as the daemon has it, with the same progress bar, Ctrl-C and messages as locally."""
    params = job_params(args)
    frames = [load_image(path, f"frame {i}") for i, path in enumerate(args.frames, 1)]
    styles = [_read_style(path, index) for index, path in enumerate(args.styles, 1)]
    written: set[int] = set()

    def write(index: int, image: RawImage) -> None:
        pixels = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 4)
        frame = frames[index]
        args.out_dir.mkdir(exist_ok=True)  # not before: a refused job leaves nothing behind
        save_image(pixels if frame.shape[2] == 4 else pixels[..., :3], paths[index])
        written.add(index)

    with ProgressBar(disabled=args.quiet) as bar, CancelOnInterrupt() as interrupt:
        try:
            stream = client.submit(
                new_job_id(),
                _as_rgba(frames[0]),
                styles,
                params,
                sequence=[_as_rgba(frame) for frame in frames[1:]],
                should_cancel=interrupt.requested,
                resubmit=True,
            )
            result = _follow(stream, bar, write)
        except ProtocolError as error:  # frames of different sizes, say, refused before sending
            raise InvalidInputError(error.message) from None
        except ClientError as error:
            raise DaemonError(str(error)) from None
    if result is not None:
        # Any the stream did not hand out (a kept result comes back whole); a cancelled job's
        # last frame is partial, and left out.
        finished = result.images[:-1] if result.cancelled else result.images
        for index, image in enumerate(finished):
            if index not in written:
                write(index, image)
        for warning in result.warnings:
            log.warning("%s", warning)
    if result is None or result.cancelled:
        print(
            f"interrupted: wrote {len(written)} of {len(frames)} frames to {args.out_dir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(
            f"wrote {len(frames)} frames to {args.out_dir} ({result.stats.steps} steps, "
            f"{result.stats.elapsed:.1f} s, on the daemon at {client.info.endpoint})",
            file=sys.stderr,
        )
    return 0


def _follow(
    stream: JobStream,
    bar: ProgressBar,
    on_frame: Callable[[int, RawImage], None] | None = None,
) -> Result | None:
    """The job's Result; None if it was cancelled before it started; DaemonError otherwise.
    A sequence's frames go to `on_frame` (0-based index, image) as they are done."""
    with stream:
        for event in stream:
            if isinstance(event, Progress):
                bar.update(event)
                if event.frame_image is not None and on_frame is not None:
                    on_frame(event.frame - 1, event.frame_image)
            elif isinstance(event, Resubmitted):
                log.warning("%s", event)  # its progress starts again from zero
            elif isinstance(event, Result):
                return event
            elif isinstance(event, Error):
                if event.code is ErrorCode.CANCELLED and stream.cancel_sent:
                    return None
                raise DaemonError(
                    f"the daemon could not run the job: {event.message} ({event.code.value})"
                )
    raise DaemonError("the daemon ended the job without a result")
