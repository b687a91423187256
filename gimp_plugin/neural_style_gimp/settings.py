"""What `neural-style install-gimp-plugin` records beside the plug-in: how to start the daemon
and the bridge of the installation that installed it. Standard library only."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import PluginError

SETTINGS_FILE = "daemon.json"  # written next to the plug-in by `neural-style install-gimp-plugin`


@dataclass(frozen=True)
class InstallSettings:
    """What the installer recorded: how to start the daemon of the installation that
    installed this plug-in, and its bridge (for a GIMP whose Python has no pyzmq)."""

    start_command: tuple[str, ...]
    version: str = ""
    bridge_command: tuple[str, ...] = ()  # empty: installed before the bridge existed


def load_settings(folder: str) -> InstallSettings | None:
    """The recorded settings in `folder`, or None when there are none (a hand-copied plug-in)."""
    path = os.path.join(folder, SETTINGS_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
        command = _words(raw, "start_command")
        bridge = _words(raw, "bridge_command") if "bridge_command" in raw else ()
        return InstallSettings(command, str(raw.get("version", "")), bridge)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PluginError(
            f"The plug-in's settings file {path} is damaged ({error}): run "
            f"`neural-style install-gimp-plugin` again."
        ) from None


def _words(raw: dict, key: str) -> tuple[str, ...]:
    command = raw[key]
    if not (isinstance(command, list) and command and all(isinstance(w, str) for w in command)):
        raise ValueError(f"{key} is not a list of words")
    return tuple(command)
