"""The settings a result layer keeps (issue 18), without GIMP: what the record holds, that it
reads back as written, what a damaged one says, and how running again finds the style files
(moved, changed, or a layer that cannot be found again). Real GIMP saves, reopens and runs one
again in test_gimp_e2e_results.py."""

from __future__ import annotations

import json

import pytest

from neural_style_gimp.arguments import FRAME_ARGUMENTS
from neural_style_gimp.errors import PluginError
from neural_style_gimp.result_settings import (
    ResultSettings,
    StyleRecord,
    checksum,
    record_settings,
    run_again,
)

VALUES = {
    "style-file": "/somewhere/starry_night.jpg",
    "style-layer": None,
    "second-style-file": None,
    "second-style-layer": object(),  # a Gimp.Layer: never kept as such
    "second-style-share": 30.0,
    "style-region": "selection",
    "region-channel": None,
    "strength": 70.0,
    "quality": "draft",
    "size": 512,
    "preserve-colors": "luminance",
    "seed": 7,
    "connection-file": "/run/daemon.json",
}


def style_file(tmp_path, name: str = "starry_night.png", data: bytes = b"style bytes"):
    path = tmp_path / name
    path.write_bytes(data)
    return StyleRecord("starry night", checksum(data), str(path))


def test_a_record_keeps_the_dialogs_values_and_reads_back_as_written(tmp_path):
    styles = [style_file(tmp_path), StyleRecord("Painting", checksum(b"png"), layer="Painting")]
    settings = record_settings(
        "python-fu-neural-style", VALUES, styles, source=4, region_channel=9, version="0.1.0"
    )
    # Numbers and choices by argument name; never files, layers, channels or the connection.
    assert settings.values == {
        "second-style-share": 30.0,
        "style-region": "selection",
        "strength": 70.0,
        "quality": "draft",
        "size": 512,
        "preserve-colors": "luminance",
        "seed": 7,
    }
    data = settings.to_bytes()
    record = json.loads(data)
    assert record["tool"] == "neural-style-gimp" and record["version"] == "0.1.0"
    assert ResultSettings.from_bytes(data, "Photo (starry night)") == settings


def test_the_frames_record_keeps_where_the_frames_went(tmp_path):
    values = {**VALUES, "frames-into": "in-place"}
    settings = record_settings("frames", values, [style_file(tmp_path)], arguments=FRAME_ARGUMENTS)
    assert settings.values["frames-into"] == "in-place"
    assert "style-region" not in settings.values


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"format": 99}', b'{"format": 1, "procedure": "x", "styles": []}'],
)
def test_a_damaged_record_names_the_layer(data):
    with pytest.raises(PluginError, match="settings kept with \u201cPhoto\u201d are damaged"):
        ResultSettings.from_bytes(data, "Photo")


def test_running_again_finds_the_style_files_by_path(tmp_path):
    first, second = style_file(tmp_path), style_file(tmp_path, "scream.png", b"other")
    settings = record_settings("python-fu-neural-style", VALUES, [first, second])
    again = run_again(settings)
    assert again.missing == [] and again.changed == []
    assert again.values["style-file"] == first.path
    assert again.values["second-style-file"] == second.path
    assert again.values["style-layer"] is None and again.values["second-style-layer"] is None
    assert again.values["strength"] == 70.0 and again.values["seed"] == 7


def test_a_moved_changed_or_layer_style_is_said(tmp_path):
    moved = style_file(tmp_path)
    changed = style_file(tmp_path, "scream.png", b"before")
    (tmp_path / "scream.png").write_bytes(b"after")
    (tmp_path / "starry_night.png").unlink()
    again = run_again(record_settings("python-fu-neural-style", VALUES, [moved, changed]))
    assert again.values["style-file"] is None  # the dialog asks for it
    assert again.missing == [
        f"The style image {moved.path} is missing (moved or deleted?): choose it again."
    ]
    assert again.changed == [
        "The second style image scream.png has changed since the result was made: the "
        "result will differ."
    ]
    layer = StyleRecord("Painting", checksum(b"png"), layer="Painting")
    from_layer = run_again(record_settings("python-fu-neural-style", VALUES, [layer]))
    assert from_layer.values["style-file"] is None
    assert "the layer \u201cPainting\u201d, which cannot be found again" in from_layer.missing[0]
    # One style: the second is cleared, whatever the last values held.
    assert from_layer.values["second-style-file"] is None
