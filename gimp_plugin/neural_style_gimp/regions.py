"""Where each style goes (Gatys et al. 2017's spatial control, issue 17): the region the user
chose, the masks a job gets from it, the part of a style layer to learn from, and how the
result is written back. No GIMP here: `plugin.py` reads the masks (the selection, a channel, a
layer mask) as 8-bit grey bytes over a layer's own area, 255 inside, and hands them over."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from neural_style_protocol.images import RawImage

from .errors import PluginError

EVERYWHERE_ADVICE = "or choose Everywhere in \u201cWhere the style goes\u201d"
NO_SELECTION = f"There is no selection: select where the first style goes, {EVERYWHERE_ADVICE}."
# Looks every grey level up as its opposite: bytes.translate inverts a mask in C, at the speed
# a layer of tens of megapixels needs in GIMP's Python (which may have no numpy).
_INVERSE = bytes(range(255, -1, -1))


class StyleRegion(str, Enum):
    """Where the first style goes."""

    EVERYWHERE = "everywhere"  # as before regions: a second style blends in by its share
    SELECTION = "selection"  # inside the image's selection; its feathering is the transition
    CHANNEL = "channel"  # inside a channel of the image, as a selection would be


REGION_LABELS = {
    StyleRegion.EVERYWHERE: "Everywhere (a second style blends in)",
    StyleRegion.SELECTION: "In the selection (outside: the second style, or the photo)",
    StyleRegion.CHANNEL: "In the region channel (outside: the second style, or the photo)",
}


class ResultArea(Enum):
    """Which part of a layer the result replaces."""

    SELECTION = "selection"  # as before regions: all of it, clipped by the selection if any
    WHOLE = "whole"  # all of it whatever the selection: the second style covers the rest
    REGION = "region"  # the region only (its soft edge blends): the rest keeps the photo


def style_region(values: Mapping[str, object]) -> StyleRegion:
    """The region chosen ("style-region"); PluginError for a name no choice has (a script)."""
    name = values.get("style-region") or StyleRegion.EVERYWHERE.value
    try:
        region = StyleRegion(name)
    except ValueError:
        known = ", ".join(region.value for region in StyleRegion)
        raise PluginError(
            f"Invalid setting: style-region {name!r} is not one of {known}."
        ) from None
    if region is StyleRegion.CHANNEL and values.get("region-channel") is None:
        raise PluginError(
            "The first style is to go in a channel, but no region channel is chosen: choose "
            "one (Select > Save to Channel makes one from a selection), "
            f"{EVERYWHERE_ADVICE}."
        )
    return region


def result_area(region: StyleRegion, style_count: int) -> ResultArea:
    if region is StyleRegion.EVERYWHERE:
        return ResultArea.SELECTION
    return ResultArea.WHOLE if style_count > 1 else ResultArea.REGION


def invert(mask: bytes) -> bytes:
    return mask.translate(_INVERSE)


def is_black(mask: bytes) -> bool:
    return not mask.strip(b"\0")


def region_masks(
    region: StyleRegion, mask: bytes | None, width: int, height: int, style_count: int
) -> tuple[RawImage | None, ...]:
    """A job's style masks for a layer of width x height: none where the first style goes
    everywhere; else the first style inside `mask` (the region over the layer) and the second
    style, if any, in the rest. With one style only, the rest has no style (the daemon keeps it
    close to the photo, and the result is clipped to the region)."""
    if region is StyleRegion.EVERYWHERE:
        return ()
    if mask is None:
        raise ValueError("a region needs its mask")
    first = RawImage(mask, width, height, 1)
    if style_count == 1:
        return (first,)
    return (first, RawImage(invert(mask), width, height, 1))


def check_region(mask: bytes, layer: str, channel: str | None = None) -> None:
    """Refuse a region that is black over the layer: its first style would go nowhere.
    `channel`: the region channel's name; None for the selection."""
    if not is_black(mask):
        return
    if channel is None:
        raise PluginError(
            f"The selection does not touch the layer \u201c{layer}\u201d: select where on it "
            f"the first style goes, {EVERYWHERE_ADVICE}."
        )
    raise PluginError(
        f"The region channel \u201c{channel}\u201d is black over the layer \u201c{layer}"
        f"\u201d: paint it white where the first style goes, or choose another channel."
    )


def other_image_channel(channel: str) -> PluginError:
    return PluginError(
        f"The region channel \u201c{channel}\u201d belongs to another image: choose a "
        f"channel of the image being stylised."
    )


def check_source(mask: bytes, layer: str, from_selection: bool) -> None:
    """Refuse a source mask black everywhere: nothing of the style layer to learn from.
    `from_selection`: the mask is the selection of the style layer's image, not its mask."""
    if not is_black(mask):
        return
    if from_selection:
        raise PluginError(
            f"The selection in the image of the style layer \u201c{layer}\u201d does not "
            f"touch that layer: select the part of it to learn the style from, or select "
            f"nothing there (Select > None) to learn from the whole layer."
        )
    raise PluginError(
        f"The layer mask of the style layer \u201c{layer}\u201d is black everywhere, so "
        f"there is nothing of the layer to learn the style from: paint the mask white where "
        f"the style is, or disable the mask (Layer > Mask > Disable Layer Mask) to learn "
        f"from the whole layer."
    )


def source_mask(mask: bytes, width: int, height: int, layer: str, from_selection: bool) -> RawImage:
    """The part of a style layer (width x height) to learn from, checked."""
    check_source(mask, layer, from_selection)
    return RawImage(mask, width, height, 1)
