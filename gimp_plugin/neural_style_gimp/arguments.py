"""The procedures' arguments, as data: `plugin.py` registers them with GIMP from this table,
and turns the values GIMP hands back into a job with the functions below."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neural_style_protocol.errors import ProtocolError
from neural_style_protocol.params import MAX_SEED, MAX_SIZE, MIN_SIZE, ColorMode, JobParams, Preset

from .errors import PluginError
from .frames import FRAMES_INTO_LABELS, FramesInto
from .regions import REGION_LABELS, StyleRegion, style_region

FILE, LAYER, CHANNEL = "file", "layer", "channel"
DOUBLE, INT, CHOICE, STRING = "double", "int", "choice", "string"


@dataclass(frozen=True)
class Argument:
    name: str
    label: str  # with GIMP's "_" mnemonic
    blurb: str
    kind: str
    default: object = None
    low: float = 0
    high: float = 0
    choices: tuple[tuple[str, str], ...] = ()  # (id as the protocol spells it, label)


_QUALITY_LABELS = {
    Preset.DRAFT: "Draft (fast)",
    Preset.NORMAL: "Normal",
    Preset.BEST: "Best (slow)",
}
_COLOR_LABELS = {
    ColorMode.NONE: "No: take the style's colours",
    ColorMode.LUMINANCE: "Luminance: style the brightness only",
    ColorMode.HISTOGRAM: "Histogram: recolour the style to the layer's",
}
# The processing size "0" stands for without a CUDA GPU: on a 2-core CPU a 1024 px job takes
# four times as long as a 512 px one (README). With one, "0" is the layer's own size: the daemon
# runs whatever does not fit whole in tiles.
AUTOMATIC_SIZE_ELSEWHERE = 512
DEFAULT_SIZE = 0

ARGUMENTS = (
    Argument("style-file", "_Style image", "The painting or picture whose style to apply", FILE),
    Argument(
        "style-layer",
        "...or style _layer",
        "A layer of any open image to take the style from, instead of a file",
        LAYER,
    ),
    Argument(
        "second-style-file",
        "Second style _image",
        "A second style: blended with the first, or outside the first style's region",
        FILE,
    ),
    Argument(
        "second-style-layer",
        "...or second style la_yer",
        "A layer of any open image as the second style, instead of a file",
        LAYER,
    ),
    Argument(
        "second-style-share",
        "Second style's s_hare (%)",
        "How much of the blend the second style makes, where the first style goes everywhere",
        DOUBLE,
        50.0,
        0.0,
        100.0,
    ),
    Argument(
        "style-region",
        "_Where the style goes",
        "Everywhere (a second style blends in by its share; a selection only limits the "
        "result), or only inside the selection or a channel (its soft edge is the "
        "transition): outside it the second style if one is chosen, else the photo as it is",
        CHOICE,
        StyleRegion.EVERYWHERE.value,
        choices=tuple((r.value, REGION_LABELS[r]) for r in StyleRegion),
    ),
    Argument(
        "region-channel",
        "Region _channel",
        "The channel of the image (white: the first style) where the style goes in a channel",
        CHANNEL,
    ),
    Argument(
        "strength",
        "Style s_trength",
        "0 keeps the layer almost as it is, 100 lets the style dominate",
        DOUBLE,
        50.0,
        0.0,
        100.0,
    ),
    Argument(
        "quality",
        "_Quality",
        "Draft is quickest, Best takes longest",
        CHOICE,
        Preset.NORMAL.value,
        choices=tuple((p.value, _QUALITY_LABELS[p]) for p in Preset),
    ),
    Argument(
        "size",
        "Processing si_ze (px; 0: automatic)",
        "The long side the style is "
        "computed at: 0 chooses for the style daemon's device (the layer's full size on an "
        f"NVIDIA GPU, {AUTOMATIC_SIZE_ELSEWHERE} px otherwise); the layer's own size or "
        "more: full size. The result always has the layer's size",
        INT,
        DEFAULT_SIZE,
        0,
        MAX_SIZE,
    ),
    Argument(
        "preserve-colors",
        "_Keep the layer's colours",
        "Keep the layer's colours and take only the brush work from the style",
        CHOICE,
        ColorMode.NONE.value,
        choices=tuple((c.value, _COLOR_LABELS[c]) for c in ColorMode),
    ),
    Argument(
        "seed",
        "Ran_dom seed",
        "The same seed and settings give the same result",
        INT,
        0,
        0,
        MAX_SEED,
    ),
    Argument(
        "connection-file",
        "Daemon co_nnection file (experts)",
        "The style daemon's connection file; empty: find the running daemon, or start one",
        STRING,
        "",
    ),
)
BY_NAME = {argument.name: argument for argument in ARGUMENTS}
# The dialog's frames, top to bottom: (title, argument names); a None title for no frame.
DIALOG_LAYOUT = (
    ("Style", ("style-file", "style-layer")),
    (
        "Second style (optional)",
        ("second-style-file", "second-style-layer", "second-style-share"),
    ),
    ("Regions", ("style-region", "region-channel")),
    ("Result", ("strength", "quality", "size", "preserve-colors", "seed")),
    (None, ("connection-file",)),
)
# Arguments the dialog greys out unless a choice has one of the values: (argument, choice,
# values). The share means something only in a blend, the channel only as the region.
DIALOG_SENSITIVITY = (
    ("second-style-share", "style-region", (StyleRegion.EVERYWHERE.value,)),
    ("region-channel", "style-region", (StyleRegion.CHANNEL.value,)),
)

# "Neural Style (frames)...": the same, less the regions (a sequence takes no masks), plus where
# the frames go.
_REGION_ARGUMENTS = ("style-region", "region-channel")
FRAME_ARGUMENTS = (
    *(argument for argument in ARGUMENTS[:-1] if argument.name not in _REGION_ARGUMENTS),
    Argument(
        "frames-into",
        "_Frames go into",
        "A new image, a layer a frame (the animation stays as it is), or the frames' own "
        "layers, in one undo step",
        CHOICE,
        FramesInto.NEW_IMAGE.value,
        choices=tuple((choice.value, FRAMES_INTO_LABELS[choice]) for choice in FramesInto),
    ),
    ARGUMENTS[-1],
)
FRAME_DIALOG_LAYOUT = (
    *(group for group in DIALOG_LAYOUT[:-1] if group[0] != "Regions"),
    ("Frames", ("frames-into",)),
    DIALOG_LAYOUT[-1],
)


@dataclass(frozen=True)
class StyleChoice:
    """One style the user picked: a file's path or a layer (a Gimp.Layer), never both."""

    path: str | None = None
    layer: object = None


def choose_styles(values: Mapping[str, object]) -> list[StyleChoice]:
    """The styles to use, first one first; PluginError when none or an ambiguous one."""
    chosen = []
    for prefix, what in (("style", "the style"), ("second-style", "the second style")):
        path, layer = values.get(f"{prefix}-file"), values.get(f"{prefix}-layer")
        if path and layer is not None:
            raise PluginError(
                f"Both a file and a layer are chosen for {what}: clear one of "
                f"them so that it is clear which to use."
            )
        if path:
            chosen.append(StyleChoice(path=str(path)))
        elif layer is not None:
            chosen.append(StyleChoice(layer=layer))
        elif prefix == "style":
            if values.get("second-style-file") or values.get("second-style-layer") is not None:
                raise PluginError(
                    "A second style is chosen but no first one: choose the "
                    "style image (a file, or a layer of an open image)."
                )
            raise PluginError(
                "No style chosen: pick a style image file, or a layer of an "
                "open image (for example a painting opened in GIMP)."
            )
    return chosen


def read_style_file(path: str) -> bytes:
    """The file's bytes (the daemon decodes and checks them); PluginError if unreadable."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise PluginError(f"The style image {path} does not exist (moved or deleted?).") from None
    except IsADirectoryError:
        raise PluginError(f"The style image {path} is a folder, not an image file.") from None
    except OSError as error:
        raise PluginError(f"Cannot read the style image {path}: {error.strerror}.") from None


def automatic_size(device: str) -> int | None:
    """The processing size for a daemon computing on `device`, as its status names it
    ("cuda:0 (NVIDIA H100 80GB HBM3)", "cpu", "mps"); None: the layer's own."""
    return None if device.startswith("cuda") else AUTOMATIC_SIZE_ELSEWHERE


def processing_size(width: int, height: int, size: int, device: str) -> int | None:
    """The long side to process at (0: `automatic_size`): None (the layer's own) for a size
    not below the layer's, so a small layer is never enlarged just to be worked on."""
    if size <= 0:
        automatic = automatic_size(device)
        if automatic is None:
            return None
        size = automatic
    if size >= max(width, height):
        return None
    return max(size, MIN_SIZE)


def job_params(
    values: Mapping[str, object],
    width: int,
    height: int,
    style_count: int,
    device: str,
    live_interval: float | None = None,
) -> JobParams:
    """The daemon's parameters for a layer of width x height, for a daemon computing on
    `device`, with live images every `live_interval` seconds where given; PluginError for bad
    values (scripts can pass anything GIMP's ranges let through)."""

    def get(name: str) -> Any:  # a GIMP config value: its type is the argument's kind
        return values.get(name, BY_NAME[name].default)

    share = float(get("second-style-share"))
    # In a region each style rules its own part at full strength: there is nothing to share.
    blended = style_count == 2 and style_region(values) is StyleRegion.EVERYWHERE
    weights = (100.0 - share, share) if blended else None
    if weights is not None and min(weights) <= 0:
        which = "first" if weights[0] <= 0 else "second"
        raise PluginError(
            f"The second style's share is {share:g} %, which leaves nothing of "
            f"the {which} style: use a share between 0 and 100, or one style."
        )
    try:
        # JobParams turns the choices' strings into its enums and refuses unknown ones.
        return JobParams(
            preset=str(get("quality")),  # type: ignore[arg-type]
            strength=float(get("strength")),
            size=processing_size(
                width,
                height,
                int(get("size")),
                device,
            ),
            preserve_colors=str(get("preserve-colors")),  # type: ignore[arg-type]
            seed=int(get("seed")),
            style_weights=weights,
            live_interval=live_interval,
        )
    except ProtocolError as error:
        raise PluginError(f"Invalid setting: {error.message}.") from None


def style_name(choice: StyleChoice, layer_name: str = "") -> str:
    """How a style is named in the new layer's name: the file's name without its extension
    (underscores read as spaces: "starry_night.jpg" is "starry night"), or the layer's name."""
    if choice.path:
        stem = os.path.splitext(os.path.basename(choice.path))[0].replace("_", " ").strip()
        return stem or choice.path
    return layer_name or "layer"


def result_layer_name(source: str, styles: list[str], limit: int = 80) -> str:
    """ "Portrait (Starry Night)", "Portrait (Starry Night + Scream)"; long names shortened."""
    name = f"{source} ({' + '.join(styles)})"
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"
