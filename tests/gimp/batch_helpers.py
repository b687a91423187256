"""Run inside real GIMP 3 (its Python, `gi`), by the end-to-end tests' batch scripts: build test
images from raw pixel files, call a procedure, and write what GIMP then holds to files that the
tests read. Not imported by pytest."""

import json
import os

from gi.repository import Gegl, Gimp, Gio

PIXELS = "R'G'B'A u8"
MASK = "Y u8"


def read_pixels(drawable, fmt=PIXELS):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def add_layer(image, name, raw_path, width, height, offsets=(0, 0), alpha=True):
    kind = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
    layer = Gimp.Layer.new(image, name, width, height, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(*offsets)
    with open(raw_path, "rb") as file:
        data = file.read()
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXELS, data)
    buffer.flush()
    return layer


def run_procedure(name, image, drawables, **properties):
    """(status nick, error message) of running `name` non-interactively."""
    procedure = Gimp.get_pdb().lookup_procedure(name)
    if procedure is None:
        raise RuntimeError(f"procedure {name} is not registered")
    config = procedure.create_config()
    config.set_property("run-mode", properties.pop("run_mode", Gimp.RunMode.NONINTERACTIVE))
    config.set_property("image", image)
    config.set_core_object_array("drawables", list(drawables))
    for key, value in properties.items():
        key = key.replace("_", "-")
        if key.endswith("-file") and key != "connection-file" and value is not None:
            value = Gio.File.new_for_path(value)
        config.set_property(key, value)
    result = procedure.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 else None
    return status.value_nick, (message if isinstance(message, str) else None)


def mask_over(mask, layer):
    """A channel (the selection, a channel, a layer mask) over the layer's area, as grey."""
    _, x, y = layer.get_offsets()
    _, mask_x, mask_y = mask.get_offsets()
    rect = Gegl.Rectangle.new(x - mask_x, y - mask_y, layer.get_width(), layer.get_height())
    return bytes(mask.get_buffer().get(rect, 1.0, MASK, Gegl.AbyssPolicy.NONE))


def add_channel(image, name, raw_path):
    """A channel of the image's size from grey bytes, not selected (the layers stay so)."""
    selected = image.get_selected_layers()
    channel = Gimp.Channel.new(
        image, name, image.get_width(), image.get_height(), 100.0, Gegl.Color.new("black")
    )
    image.insert_channel(channel, None, 0)
    with open(raw_path, "rb") as file:
        data = file.read()
    rect = Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height())
    buffer = channel.get_buffer()
    buffer.set(rect, MASK, data)
    buffer.flush()
    image.set_selected_layers(selected)
    return channel


def add_layer_mask(layer, raw_path):
    """A layer mask from grey bytes of the layer's size."""
    mask = layer.create_mask(Gimp.AddMaskType.BLACK)
    layer.add_mask(mask)
    with open(raw_path, "rb") as file:
        data = file.read()
    buffer = mask.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height()), MASK, data)
    buffer.flush()
    return mask


def write_raw(folder, name, data):
    with open(os.path.join(folder, f"{name}.raw"), "wb") as file:
        file.write(data)


def composite(image):
    """The image's visible pixels, as one flattened layer gives them."""
    copy = image.duplicate()
    flat = copy.flatten()
    data = read_pixels(flat)
    copy.delete()
    return data


def dump(image, folder, tag):
    """Every layer's pixels (and mask) and facts, top to bottom, into folder/tag.*"""
    facts = []
    for index, layer in enumerate(image.get_layers()):
        _, x, y = layer.get_offsets()
        path = os.path.join(folder, f"{tag}.{index}.raw")
        with open(path, "wb") as file:
            file.write(read_pixels(layer))
        mask = layer.get_mask()
        if mask is not None:
            with open(path + ".mask", "wb") as file:
                file.write(read_pixels(mask, "Y' u8"))
        facts.append(
            {
                "name": layer.get_name(),
                "width": layer.get_width(),
                "height": layer.get_height(),
                "offsets": [x, y],
                "alpha": bool(layer.has_alpha()),
                "mask": mask is not None,
            }
        )
    with open(os.path.join(folder, f"{tag}.composite.raw"), "wb") as file:
        file.write(composite(image))
    with open(os.path.join(folder, f"{tag}.json"), "w") as file:
        json.dump(facts, file)


def report(folder, **facts):
    with open(os.path.join(folder, "report.json"), "w") as file:
        json.dump(facts, file)
