"""The GIMP side of the plug-in, and the only module that imports `gi`: registers the two
procedures, shows the dialog, and moves pixels between GIMP's layers and the style daemon. What
GIMP need not know (arguments, naming, progress text, the daemon) lives in the modules beside it.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import cast

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

from neural_style_protocol.images import RawImage  # noqa: E402

from .arguments import (  # noqa: E402
    ARGUMENTS,
    CHOICE,
    DIALOG_LAYOUT,
    DOUBLE,
    FILE,
    INT,
    LAYER,
    STRING,
    choose_styles,
    job_params,
    read_style_file,
    result_layer_name,
    style_name,
)
from .errors import PluginError  # noqa: E402
from .link import open_link  # noqa: E402
from .png import encode_png  # noqa: E402
from .progress import ProgressReport  # noqa: E402
from .settings import load_settings  # noqa: E402

NEW_LAYER = "python-fu-neural-style"
IN_PLACE = "python-fu-neural-style-in-place"
# Non-linear sRGB, as image files hold it; "RGBA u8" would be linear light.
PIXELS = "R'G'B'A u8"
PLUGIN_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROCEDURES = {
    NEW_LAYER: (
        "_Neural Style...",
        "Neural Style",
        "Stylise each selected layer into a new layer above it",
        "Paints the selected layers in the style of a painting or picture (Gatys et "
        "al.), with the neural-style daemon. Each result is a new layer above its "
        "source; with a selection, the new layer is masked to it.",
    ),
    IN_PLACE: (
        "Neural Style (_in place)...",
        "Neural Style (in place)",
        "Stylise the selected layers in place",
        "Replaces the pixels of every selected layer (within the selection, if any) "
        "with the stylised image; one Undo restores them all.",
    ),
}


def _add_arguments(procedure: Gimp.Procedure) -> None:
    flags = GObject.ParamFlags.READWRITE
    for arg in ARGUMENTS:
        if arg.kind == FILE:
            procedure.add_file_argument(
                arg.name, arg.label, arg.blurb, Gimp.FileChooserAction.OPEN, True, None, flags
            )
        elif arg.kind == LAYER:
            procedure.add_layer_argument(arg.name, arg.label, arg.blurb, True, flags)
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


def _fill_dialog(dialog: GimpUi.ProcedureDialog) -> None:
    """The arguments in titled frames, as DIALOG_LAYOUT orders them."""
    top: list[str] = []
    for number, (title, names) in enumerate(DIALOG_LAYOUT):
        if title is None:
            top.extend(names)
            continue
        box, label, frame = f"group-{number}-box", f"group-{number}-title", f"group-{number}"
        dialog.fill_box(box, list(names))
        dialog.get_label(label, title, False, False)
        dialog.fill_frame(frame, label, False, box)
        top.append(frame)
    dialog.fill(top)


def _values(config: Gimp.ProcedureConfig) -> dict[str, object]:
    """The arguments as plain values: files as paths, layers as Gimp.Layer or None."""
    values: dict[str, object] = {}
    for arg in ARGUMENTS:
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


def _write(buffer: Gegl.Buffer, data: bytes, width: int, height: int) -> None:
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXELS, data)
    buffer.flush()


def _layers_to_stylise(image: Gimp.Image, drawables: list) -> list:
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        mode = "grayscale" if image.get_base_type() == Gimp.ImageBaseType.GRAY else "indexed"
        raise PluginError(
            f"Neural Style works on RGB images, and this one is {mode}: convert "
            f"it with Image > Mode > RGB first."
        )
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


def _apply_as_new_layer(image: Gimp.Image, source: Gimp.Layer, data: bytes, name: str) -> None:
    width, height = source.get_width(), source.get_height()
    layer = Gimp.Layer.new(
        image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
    _, x, y = source.get_offsets()
    layer.set_offsets(x, y)
    _write(layer.get_buffer(), data, width, height)
    if not Gimp.Selection.is_empty(image):
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    layer.update(0, 0, width, height)


def _apply_in_place(layer: Gimp.Layer, data: bytes) -> None:
    # Through the shadow buffer, as GIMP's own filters do: merging it honours the selection
    # and records the undo step.
    width, height = layer.get_width(), layer.get_height()
    _write(layer.get_shadow_buffer(), data, width, height)
    layer.merge_shadow(True)
    layer.update(0, 0, width, height)


def _show(text: str, fraction: float) -> None:
    Gimp.progress_set_text(text)
    Gimp.progress_update(fraction)


def _stylise(
    image: Gimp.Image, drawables: list, config: Gimp.ProcedureConfig, in_place: bool
) -> list[str]:
    """Do the work; the daemon's warnings (e.g. a smaller size after running out of memory)."""
    values = _values(config)
    layers = _layers_to_stylise(image, drawables)
    choices = choose_styles(values)
    styles, names = [], []
    for choice in choices:
        if choice.path:
            styles.append(read_style_file(choice.path))
            names.append(style_name(choice))
        else:
            # arguments.py stays free of GIMP, so it can only type the layer as an object.
            layer = cast(Gimp.Layer, choice.layer)
            pixels, width, height = _read(layer)
            styles.append(encode_png(pixels, width, height))
            names.append(style_name(choice, layer.get_name()))
    report = ProgressReport(len(layers))
    Gimp.progress_init(report.starting())
    warnings: list[str] = []
    with open_link(
        str(values["connection-file"] or ""), load_settings(PLUGIN_FOLDER), _show
    ) as link:
        image.undo_group_start()
        try:
            for index, layer in enumerate(layers):
                report.next_layer(index)
                pixels, width, height = _read(layer)
                params = job_params(values, width, height, len(styles), link.device)
                result = link.stylize(
                    RawImage(pixels, width, height, 4), styles, params, report, _show
                )
                data = bytes(result.image.data)
                if in_place:
                    _apply_in_place(layer, data)
                else:
                    _apply_as_new_layer(
                        image, layer, data, result_layer_name(layer.get_name(), names)
                    )
                warnings.extend(result.warnings)
        finally:
            image.undo_group_end()
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return warnings


def _run(procedure, run_mode, image, drawables, config, data):
    name = procedure.get_name()
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(name)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, _PROCEDURES[name][1])
        _fill_dialog(dialog)
        accepted = dialog.run()
        dialog.destroy()
        if not accepted:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
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
    for warning in warnings:
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
        procedure.set_sensitivity_mask(
            Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
        )
        procedure.set_menu_label(menu_label)
        procedure.set_documentation(blurb, help_text, name)
        procedure.set_attribution("neural-style-gimp", "neural-style-gimp", "2026")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        _add_arguments(procedure)
        return procedure


def main() -> None:
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
