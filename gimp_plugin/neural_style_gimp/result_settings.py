"""The settings a result layer carries (issue 18): what made it, as a parasite that GIMP saves in
the XCF, and reading them back for "Neural Style (run again)". No GIMP here: `plugin.py`
attaches the bytes to the layer and hands them back.

The record holds the dialog's own values by argument name, so that running again sets them on
the procedure's config as the dialog would; the style files by path and checksum (a file that
moved is reported missing, one that changed is said to have changed); the layers it needs (the
one stylised, a region channel) by tattoo, which GIMP keeps in the XCF."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .arguments import ARGUMENTS, CHOICE, DOUBLE, INT, Argument
from .errors import PluginError

PARASITE = "neural-style-settings"
RECORD_FORMAT = 1
_PLAIN_KINDS = (DOUBLE, INT, CHOICE)
_STYLE_FILES = ("style-file", "second-style-file")
_STYLE_LAYERS = ("style-layer", "second-style-layer")


@dataclass(frozen=True)
class StyleRecord:
    """One style as it was used: its name in the layer's name, the SHA-256 of the bytes sent,
    and its file's path (None for a style taken from a layer, named in `layer`)."""

    name: str
    sha256: str
    path: str | None = None
    layer: str | None = None


@dataclass(frozen=True)
class ResultSettings:
    procedure: str  # the procedure that made the result
    values: dict[str, object]  # the dialog's plain values (numbers and choices) by name
    styles: tuple[StyleRecord, ...]
    source: int | None = None  # the tattoo of the layer that was stylised
    region_channel: int | None = None  # the tattoo of the region channel, if one was used
    version: str = ""  # the tool's, as the installer recorded it

    def to_bytes(self) -> bytes:
        record = {
            "format": RECORD_FORMAT,
            "tool": "neural-style-gimp",
            "version": self.version,
            "procedure": self.procedure,
            "values": self.values,
            "styles": [vars(style) for style in self.styles],
            "source": self.source,
            "region_channel": self.region_channel,
        }
        return json.dumps(record, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, layer_name: str) -> ResultSettings:
        """The record in a parasite's bytes; PluginError naming the layer if it is damaged."""
        try:
            record = json.loads(bytes(data).decode())
            if record.get("format") != RECORD_FORMAT:
                raise ValueError(f"format {record.get('format')!r}, not {RECORD_FORMAT}")
            styles = tuple(StyleRecord(**style) for style in record["styles"])
            values = dict(record["values"])
            if not styles or not isinstance(record["procedure"], str):
                raise ValueError("no styles or no procedure")
            return cls(
                procedure=record["procedure"],
                values=values,
                styles=styles,
                source=_optional_int(record.get("source")),
                region_channel=_optional_int(record.get("region_channel")),
                version=str(record.get("version", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise PluginError(
                f"The settings kept with \u201c{layer_name}\u201d are damaged ({error}): "
                f"choose them again in Neural Style."
            ) from None


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a tattoo")
    return value


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_settings(
    procedure: str,
    values: Mapping[str, object],
    styles: Sequence[StyleRecord],
    *,
    arguments: Sequence[Argument] = ARGUMENTS,
    source: int | None = None,
    region_channel: int | None = None,
    version: str = "",
) -> ResultSettings:
    """The record of a run of `procedure` with the dialog's `values` (as plugin._values reads
    them) and its `styles` in order."""
    kept = {
        arg.name: values.get(arg.name, arg.default) for arg in arguments if arg.kind in _PLAIN_KINDS
    }
    return ResultSettings(
        procedure,
        kept,
        tuple(styles),
        source=source,
        region_channel=region_channel,
        version=version,
    )


@dataclass(frozen=True)
class RunAgain:
    """What running a record again needs: the values to set on the config (the style files'
    paths among them; None clears a field), and what could not be found again or has changed,
    as sentences for the user."""

    values: dict[str, object]
    missing: list[str]
    changed: list[str]


def run_again(settings: ResultSettings, arguments: Sequence[Argument] = ARGUMENTS) -> RunAgain:
    """The config values that repeat `settings`, with the style files found again by path."""
    known = {arg.name for arg in arguments}
    values: dict[str, object] = {
        name: value for name, value in settings.values.items() if name in known
    }
    missing: list[str] = []
    changed: list[str] = []
    for number, style in enumerate(settings.styles[: len(_STYLE_FILES)]):
        file_key, layer_key = _STYLE_FILES[number], _STYLE_LAYERS[number]
        values[layer_key] = None
        which = "style" if number == 0 else "second style"
        if style.path is None:
            values[file_key] = None
            missing.append(
                f"The {which} was the layer \u201c{style.layer or style.name}\u201d, which "
                f"cannot be found again: choose it (or a file) for the {which}."
            )
            continue
        values[file_key] = style.path
        try:
            with open(style.path, "rb") as file:
                now = checksum(file.read())
        except OSError:
            values[file_key] = None
            missing.append(
                f"The {which} image {style.path} is missing (moved or deleted?): choose it again."
            )
            continue
        if now != style.sha256:
            changed.append(
                f"The {which} image {os.path.basename(style.path)} has changed since the "
                f"result was made: the result will differ."
            )
    if len(settings.styles) < len(_STYLE_FILES):
        values["second-style-file"] = values["second-style-layer"] = None
    return RunAgain(values, missing, changed)
