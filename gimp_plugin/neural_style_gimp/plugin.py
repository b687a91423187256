"""The GIMP side of the plug-in, and the only module that imports `gi`: registers the four
procedures, shows the dialog, and moves pixels between GIMP's layers and the style daemon. What
GIMP need not know (arguments, naming, progress text, the daemon) lives in the modules beside it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import replace
from typing import NamedTuple, cast

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, Gio, GLib, GObject  # noqa: E402

from neural_style_protocol.images import RawImage  # noqa: E402

from .arguments import (  # noqa: E402
    ARGUMENTS,
    CHANNEL,
    CHOICE,
    DIALOG_LAYOUT,
    DIALOG_SENSITIVITY,
    DOUBLE,
    FILE,
    FRAME_ARGUMENTS,
    FRAME_DIALOG_LAYOUT,
    INT,
    LAYER,
    STRING,
    Argument,
    choose_styles,
    job_params,
    read_style_file,
    result_layer_name,
    style_name,
)
from .errors import PluginError  # noqa: E402
from .frames import FramesInto, check_frames, frames_into, paste_frame  # noqa: E402
from .link import open_link  # noqa: E402
from .png import encode_png  # noqa: E402
from .progress import ProgressReport  # noqa: E402
from .regions import (  # noqa: E402
    NO_SELECTION,
    ResultArea,
    StyleRegion,
    check_region,
    other_image_channel,
    region_masks,
    result_area,
    source_mask,
    style_region,
)
from .result_settings import (  # noqa: E402
    PARASITE,
    ResultSettings,
    StyleRecord,
    checksum,
    record_settings,
    run_again,
)
from .settings import load_settings  # noqa: E402

NEW_LAYER = "python-fu-neural-style"
IN_PLACE = "python-fu-neural-style-in-place"
FRAMES = "python-fu-neural-style-frames"
RUN_AGAIN = "python-fu-neural-style-run-again"
# Non-linear sRGB, as image files hold it; "RGBA u8" would be linear light.
PIXELS = "R'G'B'A u8"
# Masks (the selection, channels, layer masks) as 8-bit grey, linear: the selection's own storage
# in an 8-bit image. A mask's value is an opacity, which GIMP composites as linear light, so
# this is the weight GIMP itself gives each pixel; 0 and 255 stay exact whatever the storage.
MASK = "Y u8"
PLUGIN_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIVE_INTERVAL = 1.0  # seconds between the live updates of a new result layer
# GIMP's parasite flags (libgimpbase's GIMP_PARASITE_*), where the bindings do not name them.
PARASITE_PERSISTENT = getattr(Gimp, "PARASITE_PERSISTENT", 1)
PARASITE_UNDOABLE = getattr(Gimp, "PARASITE_UNDOABLE", 2)

_PROCEDURES = {
    NEW_LAYER: (
        "_Neural Style...",
        "Neural Style",
        "Stylise each selected layer into a new layer above it",
        "Paints the selected layers in the style of a painting or picture (Gatys et "
        "al.), with the neural-style daemon. Each result is a new layer above its "
        "source; with a selection, the new layer is masked to it. The style can go in "
        "the selection or a channel only, with a second style or the photo outside.",
    ),
    IN_PLACE: (
        "Neural Style (_in place)...",
        "Neural Style (in place)",
        "Stylise the selected layers in place",
        "Replaces the pixels of every selected layer (within the selection, if any) "
        "with the stylised image; one Undo restores them all.",
    ),
    FRAMES: (
        "Neural Style (_frames)...",
        "Neural Style (frames)",
        "Stylise the image's layers as the frames of an animation, without flicker",
        "Takes every layer of the image as a frame, bottom to top as GIMP plays them, and "
        "stylises them as one sequence (Ruder et al. 2016): each frame starts from the one "
        "before, moved along the motion, so the brush strokes move with the picture instead "
        "of flickering. Into a new image, or in place with one Undo. Each frame is kept as "
        "soon as it is done: cancelling keeps the frames finished.",
    ),
    RUN_AGAIN: (
        "Neural Style (_run again)...",
        "Neural Style (run again)",
        "Stylise again with the settings a result layer carries",
        "A layer made by Neural Style keeps the settings that made it (in the XCF too). This "
        "runs them again, offered in the dialog to change: a new result above the layer it "
        "was made from, or, for a result made in place, that layer stylised again. Style "
        "files are found again by their path; one that is missing is reported.",
    ),
}
# Each procedure's arguments, the dialog's frames, and what the dialog greys out.
_DIALOGS = {
    NEW_LAYER: (ARGUMENTS, DIALOG_LAYOUT, DIALOG_SENSITIVITY),
    IN_PLACE: (ARGUMENTS, DIALOG_LAYOUT, DIALOG_SENSITIVITY),
    RUN_AGAIN: (ARGUMENTS, DIALOG_LAYOUT, DIALOG_SENSITIVITY),
    FRAMES: (FRAME_ARGUMENTS, FRAME_DIALOG_LAYOUT, ()),
}


def _add_arguments(procedure: Gimp.Procedure, arguments: tuple[Argument, ...]) -> None:
    flags = GObject.ParamFlags.READWRITE
    for arg in arguments:
        if arg.kind == FILE:
            procedure.add_file_argument(
                arg.name, arg.label, arg.blurb, Gimp.FileChooserAction.OPEN, True, None, flags
            )
        elif arg.kind == LAYER:
            procedure.add_layer_argument(arg.name, arg.label, arg.blurb, True, flags)
        elif arg.kind == CHANNEL:
            procedure.add_channel_argument(arg.name, arg.label, arg.blurb, True, flags)
        elif arg.kind == DOUBLE:
            procedure.add_double_argument(
                arg.name, arg.label, arg.blurb, arg.low, arg.high, arg.default, flags
            )
        elif arg.kind == INT:
            procedure.add_int_argument(
                arg.name, arg.label, arg.blurb, int(arg.low), int(arg.high), arg.default, flags
            )
        elif arg.kind == CHOICE:
            choice = Gimp.Choice.new()
            for number, (nick, label) in enumerate(arg.choices):
                choice.add(nick, number, label, "")
            procedure.add_choice_argument(
                arg.name, arg.label, arg.blurb, choice, arg.default, flags
            )
        elif arg.kind == STRING:
            procedure.add_string_argument(arg.name, arg.label, arg.blurb, arg.default, flags)


def _fill_dialog(dialog: GimpUi.ProcedureDialog, layout: tuple, sensitivity: tuple) -> None:
    """The arguments in titled frames, as `layout` orders them (DIALOG_LAYOUT, say), greyed
    out as `sensitivity` says."""
    top: list[str] = []
    for number, (title, names) in enumerate(layout):
        if title is None:
            top.extend(names)
            continue
        box, label, frame = f"group-{number}-box", f"group-{number}-title", f"group-{number}"
        dialog.fill_box(box, list(names))
        dialog.get_label(label, title, False, False)
        dialog.fill_frame(frame, label, False, box)
        top.append(frame)
    dialog.fill(top)
    for name, choice, values in sensitivity:
        shown = [GObject.Value(GObject.TYPE_STRING, value) for value in values]
        dialog.set_sensitive_if_in(name, None, choice, Gimp.ValueArray.new_from_values(shown), True)


def _values(config: Gimp.ProcedureConfig, arguments: tuple[Argument, ...]) -> dict[str, object]:
    """The arguments as plain values: files as paths, layers as Gimp.Layer or None."""
    values: dict[str, object] = {}
    for arg in arguments:
        value = config.get_property(arg.name)
        if arg.kind == FILE:
            value = value.get_path() if value is not None else None
        values[arg.name] = value
    return values


def _read(drawable: Gimp.Drawable) -> tuple[bytes, int, int]:
    width, height = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(0, 0, width, height)
    data = drawable.get_buffer().get(rect, 1.0, PIXELS, Gegl.AbyssPolicy.CLAMP)
    return bytes(data), width, height


def _write(buffer: Gegl.Buffer, data: bytes, width: int, height: int, fmt: str = PIXELS) -> None:
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), fmt, data)
    buffer.flush()


def _read_mask(mask: Gimp.Channel, layer: Gimp.Layer) -> bytes:
    """`mask` (the selection, a channel, a layer mask) over the layer's own area, honouring
    both offsets: 0 wherever the layer lies beyond the mask (off the canvas)."""
    _, x, y = layer.get_offsets()
    _, mask_x, mask_y = mask.get_offsets()
    rect = Gegl.Rectangle.new(x - mask_x, y - mask_y, layer.get_width(), layer.get_height())
    return bytes(mask.get_buffer().get(rect, 1.0, MASK, Gegl.AbyssPolicy.NONE))


def _same(image: Gimp.Image, other: Gimp.Image) -> bool:
    return bool(image.get_id() == other.get_id())


def _region_source(image: Gimp.Image, region: StyleRegion, values: dict) -> Gimp.Channel | None:
    """What the region is read from, checked: its channel; None for the selection or none."""
    if region is StyleRegion.SELECTION and Gimp.Selection.is_empty(image):
        raise PluginError(NO_SELECTION)
    if region is not StyleRegion.CHANNEL:
        return None
    channel = cast(Gimp.Channel, values["region-channel"])  # style_region checked it is set
    if not _same(image, channel.get_image()):
        raise other_image_channel(channel.get_name())
    return channel


def _region_mask(
    image: Gimp.Image, layer: Gimp.Layer, region: StyleRegion, channel: Gimp.Channel | None
) -> bytes | None:
    """Where on the layer the first style goes (checked not to be nowhere); None: everywhere."""
    if region is StyleRegion.EVERYWHERE:
        return None
    mask = _read_mask(channel if channel is not None else image.get_selection(), layer)
    check_region(mask, layer.get_name(), channel.get_name() if channel is not None else None)
    return mask


def _style_source(image: Gimp.Image, layer: Gimp.Layer) -> RawImage | None:
    """The part of a style layer to learn from: its layer mask (where applied); else, for a
    layer of another image, that image's selection; None: all of it."""
    width, height, name = layer.get_width(), layer.get_height(), layer.get_name()
    mask = layer.get_mask()
    if mask is not None and layer.get_apply_mask():
        return source_mask(_read_mask(mask, layer), width, height, name, from_selection=False)
    own = layer.get_image()
    if not _same(image, own) and not Gimp.Selection.is_empty(own):
        selection = _read_mask(own.get_selection(), layer)
        return source_mask(selection, width, height, name, from_selection=True)
    return None


class _Styles(NamedTuple):
    data: list[bytes]  # encoded files, as sent
    names: list[str]  # for the result layer's name
    sources: list[RawImage | None]  # the part of each to learn from; None: all
    records: list[StyleRecord]  # as the result's settings keep them


def _styles(image: Gimp.Image, values: dict) -> _Styles:
    """The style images (encoded files), their names, source masks and records."""
    styles = _Styles([], [], [], [])
    for choice in choose_styles(values):
        if choice.path:
            data = read_style_file(choice.path)
            name = style_name(choice)
            styles.sources.append(None)
        else:
            # arguments.py stays free of GIMP, so it can only type the layer as an object.
            layer = cast(Gimp.Layer, choice.layer)
            pixels, width, height = _read(layer)
            data = encode_png(pixels, width, height)
            name = style_name(choice, layer.get_name())
            styles.sources.append(_style_source(image, layer))
        styles.data.append(data)
        styles.names.append(name)
        layer_name = None if choice.path else cast(Gimp.Layer, choice.layer).get_name()
        styles.records.append(StyleRecord(name, checksum(data), choice.path, layer_name))
    return styles


def _keep_settings(item: Gimp.Item, settings: ResultSettings) -> None:
    """The settings as a parasite GIMP saves in the XCF; undone with the result in place."""
    flags = PARASITE_PERSISTENT | PARASITE_UNDOABLE
    item.attach_parasite(Gimp.Parasite.new(PARASITE, flags, list(settings.to_bytes())))


def _kept_settings(layer: Gimp.Layer) -> ResultSettings | None:
    parasite = layer.get_parasite(PARASITE)
    if parasite is None:
        return None
    return ResultSettings.from_bytes(bytes(parasite.get_data()), layer.get_name())


def _check_rgb(image: Gimp.Image) -> None:
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        mode = "grayscale" if image.get_base_type() == Gimp.ImageBaseType.GRAY else "indexed"
        raise PluginError(
            f"Neural Style works on RGB images, and this one is {mode}: convert "
            f"it with Image > Mode > RGB first."
        )


def _layers_to_stylise(image: Gimp.Image, drawables: list) -> list:
    _check_rgb(image)
    if not drawables:
        raise PluginError("No layer is selected: select the layers to stylise.")
    for drawable in drawables:
        if not isinstance(drawable, Gimp.Layer):
            raise PluginError(
                f"\u201c{drawable.get_name()}\u201d is a mask or channel, not a "
                f"layer: select the layer itself."
            )
        if drawable.is_group():
            raise PluginError(
                f"\u201c{drawable.get_name()}\u201d is a layer group: select the "
                f"layers inside it (or merge the group first)."
            )
    return list(drawables)


def _apply_as_new_layer(
    image: Gimp.Image,
    source: Gimp.Layer,
    data: bytes,
    name: str,
    area: ResultArea,
    region: bytes | None,
) -> Gimp.Layer:
    width, height = source.get_width(), source.get_height()
    layer = Gimp.Layer.new(
        image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
    _, x, y = source.get_offsets()
    layer.set_offsets(x, y)
    _write(layer.get_buffer(), data, width, height)
    if area is ResultArea.REGION and region is not None:
        # The region exactly as the daemon got it: the rest shows the photo below.
        mask = layer.create_mask(Gimp.AddMaskType.BLACK)
        layer.add_mask(mask)
        _write(mask.get_buffer(), region, width, height, MASK)
    elif area is ResultArea.SELECTION and not Gimp.Selection.is_empty(image):
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    layer.update(0, 0, width, height)
    return layer


def _live_writer(layer: Gimp.Layer):
    """The job's live images into `layer`, shown at once. Its pixels only: the layer's
    insertion is the run's undo step."""

    def write(image: RawImage) -> None:
        _write(layer.get_buffer(), bytes(image.data), image.width, image.height)
        layer.update(0, 0, image.width, image.height)
        Gimp.displays_flush()

    return write


@contextlib.contextmanager
def _selection_replaced(image: Gimp.Image, channel: Gimp.Channel | None):
    """For the body, the selection is `channel` (None: nothing); then the user's again. Every
    step lands in the run's undo group, so its one Undo restores pixels and selection alike."""
    if channel is None and Gimp.Selection.is_empty(image):
        yield
        return
    saved = None
    if not Gimp.Selection.is_empty(image):
        selected = image.get_selected_layers()
        saved = Gimp.Selection.save(image)  # a channel, which GIMP selects instead of layers
    try:
        if channel is None:
            Gimp.Selection.none(image)
        else:
            image.select_item(Gimp.ChannelOps.REPLACE, channel)
        yield
    finally:
        if saved is None:
            Gimp.Selection.none(image)
        else:
            image.select_item(Gimp.ChannelOps.REPLACE, saved)
            image.remove_channel(saved)
            image.set_selected_layers(selected)


def _apply_in_place(
    image: Gimp.Image,
    layer: Gimp.Layer,
    data: bytes,
    area: ResultArea,
    channel: Gimp.Channel | None,
) -> None:
    # Through the shadow buffer, as GIMP's own filters do: merging it honours the selection
    # and records the undo step. So the selection is, while merging, what the result covers:
    # all of the layer where the second style fills the rest, the region channel where the
    # photo does (a selection region is the selection already).
    width, height = layer.get_width(), layer.get_height()
    _write(layer.get_shadow_buffer(), data, width, height)
    if area is ResultArea.WHOLE:
        with _selection_replaced(image, None):
            layer.merge_shadow(True)
    elif area is ResultArea.REGION and channel is not None:
        with _selection_replaced(image, channel):
            layer.merge_shadow(True)
    else:
        layer.merge_shadow(True)
    layer.update(0, 0, width, height)


def _show(text: str, fraction: float) -> None:
    Gimp.progress_set_text(text)
    Gimp.progress_update(fraction)


def _stylise(
    image: Gimp.Image, drawables: list, config: Gimp.ProcedureConfig, in_place: bool
) -> list[str]:
    """Do the work; the daemon's warnings (e.g. a smaller size after running out of memory)."""
    values = _values(config, ARGUMENTS)
    layers = _layers_to_stylise(image, drawables)
    region = style_region(values)
    channel = _region_source(image, region, values)
    styles = _styles(image, values)
    # Every region is read and checked before anything changes.
    regions = [_region_mask(image, layer, region, channel) for layer in layers]
    area = result_area(region, len(styles.data))
    report = ProgressReport(len(layers))
    Gimp.progress_init(report.starting())
    warnings: list[str] = []
    installed = load_settings(PLUGIN_FOLDER)
    with open_link(str(values["connection-file"] or ""), installed, _show) as link:
        image.undo_group_start()
        try:
            for index, layer in enumerate(layers):
                report.next_layer(index)
                mask = regions[index]
                pixels, width, height = _read(layer)
                settings = record_settings(
                    IN_PLACE if in_place else NEW_LAYER,
                    values,
                    styles.records,
                    source=layer.get_tattoo(),
                    region_channel=None if channel is None else channel.get_tattoo(),
                    version=installed.version if installed else "",
                )
                live = None
                if not in_place:
                    # At once, as the photo, then the result so far about once a second: a
                    # cancel (GIMP ends the plug-in) leaves it as far as the job got.
                    name = result_layer_name(layer.get_name(), styles.names)
                    live = _apply_as_new_layer(image, layer, pixels, name, area, mask)
                    _keep_settings(live, settings)
                params = job_params(
                    values,
                    width,
                    height,
                    len(styles.data),
                    link.device,
                    live_interval=None if in_place else LIVE_INTERVAL,
                )
                try:
                    result = link.stylize(
                        RawImage(pixels, width, height, 4),
                        styles.data,
                        params,
                        report,
                        _show,
                        style_masks=region_masks(region, mask, width, height, len(styles.data)),
                        style_source_masks=styles.sources,
                        on_live=None if live is None else _live_writer(live),
                    )
                except PluginError:
                    if live is not None:
                        image.remove_layer(live)  # a failed job changes nothing
                    raise
                data = bytes(result.image.data)
                if live is None:
                    _apply_in_place(image, layer, data, area, channel)
                    _keep_settings(layer, settings)
                else:
                    _write(live.get_buffer(), data, width, height)
                    live.update(0, 0, width, height)
                warnings.extend(result.warnings)
        finally:
            image.undo_group_end()
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return warnings


def _read_over_canvas(layer: Gimp.Layer, width: int, height: int) -> bytes:
    """The layer as it shows on a `width` x `height` canvas: transparent where it is not."""
    _, x, y = layer.get_offsets()
    rect = Gegl.Rectangle.new(-x, -y, width, height)
    return bytes(layer.get_buffer().get(rect, 1.0, PIXELS, Gegl.AbyssPolicy.NONE))


class _FrameWriter:
    """Puts each stylised frame into GIMP as soon as it arrives: into a new image, made at
    the first frame and shown at once where there is a display, or into the frame's own layer
    (in the image's open undo group). A frame sent again (the daemon restarted and ran the job
    again) replaces its first version."""

    def __init__(
        self,
        image: Gimp.Image,
        frames: list,
        into: FramesInto,
        show: bool,
        settings: ResultSettings,
    ) -> None:
        self.image, self.frames, self.into, self.show = image, frames, into, show
        self.settings = settings  # each frame's, with its own layer as the source
        self.width, self.height = image.get_width(), image.get_height()
        self.new_image: Gimp.Image | None = None
        self.written: dict[int, Gimp.Layer] = {}

    def __call__(self, index: int, frame: RawImage) -> None:
        data = bytes(frame.data)
        if self.into is FramesInto.IN_PLACE:
            self._into_layer(self.frames[index], data)
            self.written[index] = self.frames[index]
        else:
            self._into_new_image(index, data)
        source = self.frames[index].get_tattoo()
        _keep_settings(self.written[index], replace(self.settings, source=source))
        Gimp.displays_flush()

    def _into_layer(self, layer: Gimp.Layer, data: bytes) -> None:
        size = (layer.get_width(), layer.get_height())
        _, x, y = layer.get_offsets()
        if (x, y) != (0, 0) or size != (self.width, self.height):
            own, _, _ = _read(layer)
            data = paste_frame(own, size, (x, y), data, (self.width, self.height))
        _write(layer.get_shadow_buffer(), data, *size)
        layer.merge_shadow(True)
        layer.update(0, 0, *size)

    def _into_new_image(self, index: int, data: bytes) -> None:
        if self.new_image is None:
            self.new_image = Gimp.Image.new(self.width, self.height, Gimp.ImageBaseType.RGB)
            self.new_image.undo_disable()  # as a file loader does: it starts with no history
            if self.show:
                Gimp.Display.new(self.new_image)
        layer = self.written.get(index)
        if layer is None:
            layer = Gimp.Layer.new(
                self.new_image,
                self.frames[index].get_name(),  # GIMP's GIF export reads timing from names
                self.width,
                self.height,
                Gimp.ImageType.RGBA_IMAGE,
                100.0,
                Gimp.LayerMode.NORMAL,
            )
            # Above the frames before it (bottom to top is the animation's order).
            above = sum(1 for done in self.written if done > index)
            self.new_image.insert_layer(layer, None, above)
        _write(layer.get_buffer(), data, self.width, self.height)
        layer.update(0, 0, self.width, self.height)
        self.written[index] = layer

    def finish(self) -> None:
        if self.new_image is not None:
            self.new_image.undo_enable()


def _stylise_frames(image: Gimp.Image, config: Gimp.ProcedureConfig, show: bool) -> list[str]:
    """Every layer of the image as a frame, bottom to top, as one sequence; each frame put
    into GIMP as soon as the daemon has it. The daemon's warnings."""
    values = _values(config, FRAME_ARGUMENTS)
    _check_rgb(image)  # an indexed GIF opens indexed
    into = frames_into(values.get("frames-into"))
    frames = list(reversed(image.get_layers()))  # GIMP plays the bottom layer first
    width, height = image.get_width(), image.get_height()
    check_frames(
        [layer.get_name() for layer in frames],
        [layer.get_name() for layer in frames if layer.is_group()],
        width,
        height,
    )
    styles = _styles(image, values)
    if any(source is not None for source in styles.sources):
        raise PluginError(
            "A style layer with a layer mask (or a selection in its image) asks for part of "
            "it, and Neural Style (frames) learns from whole style images: remove the mask "
            "or the selection, or export the part as a file."
        )
    pixels = [
        RawImage(_read_over_canvas(layer, width, height), width, height, 4) for layer in frames
    ]
    report = ProgressReport(1)
    Gimp.progress_init(report.starting(f"{len(frames)} frames"))
    installed = load_settings(PLUGIN_FOLDER)
    settings = record_settings(
        FRAMES,
        values,
        styles.records,
        arguments=FRAME_ARGUMENTS,
        version=installed.version if installed else "",
    )
    writer = _FrameWriter(image, frames, into, show, settings)
    with open_link(str(values["connection-file"] or ""), installed, _show) as link:
        params = job_params(values, width, height, len(styles.data), link.device)
        if into is FramesInto.IN_PLACE:
            image.undo_group_start()
        try:
            result = link.stylize(
                pixels[0],
                styles.data,
                params,
                report,
                _show,
                sequence=pixels[1:],
                on_frame=writer,
            )
            for index, frame in enumerate(result.images):  # any not sent on their own
                if index not in writer.written:
                    writer(index, frame)
        except PluginError as error:
            if not writer.written:
                raise
            done = len(writer.written)
            raise PluginError(
                f"{error} The {done} frame{'s' if done > 1 else ''} finished before it "
                f"{'are' if done > 1 else 'is'} kept."
            ) from None
        finally:
            if into is FramesInto.IN_PLACE:
                image.undo_group_end()
            writer.finish()
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return list(result.warnings)


class _Again(NamedTuple):
    """A result layer's settings, set on the config: the layer to stylise, how, and what the
    user should know (styles missing or changed)."""

    target: Gimp.Layer
    in_place: bool
    missing: list[str]
    changed: list[str]


def _prepare_run_again(image: Gimp.Image, drawables: list, config: Gimp.ProcedureConfig) -> _Again:
    """Set the settings kept with the selected result layer on `config`."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise PluginError("Select the one layer made by Neural Style that is to be made again.")
    layer = drawables[0]
    settings = _kept_settings(layer)
    if settings is None:
        raise PluginError(
            f"\u201c{layer.get_name()}\u201d carries no Neural Style settings (it was not made "
            f"by Neural Style): select a layer Neural Style made, or use Neural Style itself."
        )
    if settings.procedure == FRAMES:
        raise PluginError(
            f"\u201c{layer.get_name()}\u201d is a frame made by Neural Style (frames): run "
            f"Neural Style (frames) on the animation again."
        )
    in_place = settings.procedure == IN_PLACE
    target = layer if in_place else image.get_layer_by_tattoo(settings.source or 0)
    if target is None:
        raise PluginError(
            f"The layer \u201c{layer.get_name()}\u201d was made from is no longer in the "
            f"image: select the layer to stylise and use Neural Style."
        )
    again = run_again(settings)
    for name, value in again.values.items():
        if name.endswith("-file") and value is not None:
            value = Gio.File.new_for_path(str(value))
        config.set_property(name, value)
    missing = list(again.missing)
    if settings.values.get("style-region") == StyleRegion.CHANNEL.value:
        channel = image.get_channel_by_tattoo(settings.region_channel or 0)
        config.set_property("region-channel", channel)
        if channel is None:
            missing.append("The region channel is no longer in the image: choose one.")
    return _Again(target, in_place, missing, again.changed)


def _run(procedure, run_mode, image, drawables, config, data):
    name = procedure.get_name()
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    notes = []  # what the user should know besides the daemon's warnings
    try:
        again = _prepare_run_again(image, drawables, config) if name == RUN_AGAIN else None
        if again is not None:
            notes = again.changed
            if again.missing and not interactive:
                raise PluginError(" ".join(again.missing))
        if interactive:
            GimpUi.init(name)
            for note in again.missing if again is not None else ():
                Gimp.message(f"Neural Style: {note}")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, _PROCEDURES[name][1])
            _fill_dialog(dialog, *_DIALOGS[name][1:])
            accepted = dialog.run()
            dialog.destroy()
            if not accepted:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        if name == FRAMES:
            warnings = _stylise_frames(image, config, show=interactive)
        elif again is not None:
            warnings = _stylise(image, [again.target], config, in_place=again.in_place)
        else:
            warnings = _stylise(image, drawables, config, in_place=name == IN_PLACE)
    except PluginError as error:
        return _failure(procedure, str(error))
    except Exception as error:  # a bug: still a message, and the traceback for a report
        traceback.print_exc()
        return _failure(
            procedure,
            f"Neural Style failed unexpectedly ({type(error).__name__}: "
            f"{error}). Please report this, with GIMP's error console.",
        )
    for warning in [*notes, *warnings]:
        Gimp.message(f"Neural Style: {warning}")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _failure(procedure: Gimp.Procedure, message: str):
    Gimp.progress_end()
    return procedure.new_return_values(
        Gimp.PDBStatusType.EXECUTION_ERROR,
        GLib.Error.new_literal(GLib.quark_from_string("neural-style"), message, 0),
    )


class NeuralStyle(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False  # no translations yet

    def do_query_procedures(self):
        return list(_PROCEDURES)

    def do_create_procedure(self, name):
        menu_label, _title, blurb, help_text = _PROCEDURES[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, _run, None)
        procedure.set_image_types("RGB*")
        sensitivity = (
            Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
        )
        if name == FRAMES:  # the image's layers, whichever are selected
            sensitivity |= Gimp.ProcedureSensitivityMask.NO_DRAWABLES
        procedure.set_sensitivity_mask(sensitivity)
        procedure.set_menu_label(menu_label)
        procedure.set_documentation(blurb, help_text, name)
        procedure.set_attribution("neural-style-gimp", "neural-style-gimp", "2026")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        _add_arguments(procedure, _DIALOGS[name][0])
        return procedure


def main() -> None:
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
