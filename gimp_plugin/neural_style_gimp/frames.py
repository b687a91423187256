"""An image's layers as the frames of an animation (issue 20; Ruder et al. 2016): which layers
are the frames and in what order, whether the daemon can take them, and the byte work of putting
a frame back into a layer that does not cover the canvas. No GIMP here: `plugin.py` reads each
layer over the canvas, as GIMP's animation playback shows it, and writes the results back."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from neural_style_protocol.limits import DEFAULT_LIMITS, MiB

from .errors import PluginError

# Room left in a message for the style images beside the frames.
_STYLE_ROOM = 64 * MiB


class FramesInto(str, Enum):
    """Where the stylised frames go."""

    NEW_IMAGE = "new-image"  # a new image, a layer a frame, named as the frames are
    IN_PLACE = "in-place"  # each frame's own layer, in one undo step


FRAMES_INTO_LABELS = {
    FramesInto.NEW_IMAGE: "A new image (the frames stay as they are)",
    FramesInto.IN_PLACE: "In place (one Undo restores every frame)",
}


def frames_into(value: object) -> FramesInto:
    """The choice of "frames-into"; PluginError for a name no choice has (a script)."""
    try:
        return FramesInto(value or FramesInto.NEW_IMAGE.value)
    except ValueError:
        known = ", ".join(choice.value for choice in FramesInto)
        raise PluginError(
            f"Invalid setting: frames-into {value!r} is not one of {known}."
        ) from None


def check_frames(names: Sequence[str], groups: Sequence[str], width: int, height: int) -> None:
    """Refuse, before anything is sent, frames the daemon cannot take: `names` are the image's
    layers bottom to top, `groups` those of them that are layer groups, each frame `width` x
    `height` (the canvas)."""
    if groups:
        raise PluginError(
            f"\u201c{groups[0]}\u201d is a layer group: Neural Style (frames) takes each layer "
            f"of the image as a frame. Merge the group first (Layer > Merge Down on its "
            f"layers), or move its layers out of it."
        )
    if len(names) < 2:
        raise PluginError(
            f"Neural Style (frames) needs an animation, one layer a frame, and this image has "
            f"{len(names)} layer{'s' if len(names) != 1 else ''}: use Neural Style for a "
            f"single layer, or open an animation (a GIF or WebP opens as one layer a frame)."
        )
    limit = DEFAULT_LIMITS.max_sequence
    if len(names) > limit:
        raise PluginError(
            f"The image has {len(names)} layers; the style daemon takes at most {limit} "
            f"frames in one animation. Stylise it in parts: copy at most {limit} frames to "
            f"a new image (or delete some) and run it on each."
        )
    side = DEFAULT_LIMITS.max_side
    if max(width, height) > side:
        raise PluginError(
            f"The image is {width} x {height} pixels; the style daemon takes at most {side} "
            f"pixels a side. Scale it down (Image > Scale Image) first."
        )
    total = len(names) * width * height * 4
    room = DEFAULT_LIMITS.max_total_bytes - _STYLE_ROOM
    if total > room:
        raise PluginError(
            f"{len(names)} frames of {width} x {height} pixels are {total // MiB} MiB, more "
            f"than the style daemon takes in one job ({room // MiB} MiB). Scale the image "
            f"down (Image > Scale Image: the processing size sets the detail anyway), or "
            f"stylise fewer frames at a time."
        )


def layer_window(
    offsets: tuple[int, int], size: tuple[int, int], canvas: tuple[int, int]
) -> tuple[int, int, int, int, int, int] | None:
    """Where a layer at `offsets` of `size` meets the canvas: (x, y) on the canvas, (x, y) on
    the layer, width, height; None where it lies wholly off the canvas."""
    (x, y), (width, height), (canvas_width, canvas_height) = offsets, size, canvas
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + width, canvas_width), min(y + height, canvas_height)
    if right <= left or bottom <= top:
        return None
    return left, top, left - x, top - y, right - left, bottom - top


def paste_frame(
    layer: bytes,
    size: tuple[int, int],
    offsets: tuple[int, int],
    frame: bytes,
    canvas: tuple[int, int],
) -> bytes:
    """The layer's RGBA pixels with its part of the canvas replaced by the stylised `frame`
    (RGBA, the canvas's size); its pixels off the canvas stay as they were. Row by row in
    bytes: GIMP's Python may have no numpy."""
    window = layer_window(offsets, size, canvas)
    if window is None:
        return layer
    canvas_x, canvas_y, layer_x, layer_y, width, height = window
    stride, frame_stride, run = size[0] * 4, canvas[0] * 4, width * 4
    pixels = bytearray(layer)
    for row in range(height):
        source = (canvas_y + row) * frame_stride + canvas_x * 4
        target = (layer_y + row) * stride + layer_x * 4
        pixels[target : target + run] = frame[source : source + run]
    return bytes(pixels)
