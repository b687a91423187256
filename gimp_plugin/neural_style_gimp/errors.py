"""The one exception the plug-in's logic raises, a message a GIMP user can act on, and the
message for the one failure that comes before any of the logic can run."""

import sys
from collections.abc import Sequence


class PluginError(Exception):
    """Shown to the user as it is: say what went wrong and what to do about it."""


def zmq_missing_message(
    command: Sequence[str] = (sys.executable,), platform: str = sys.platform
) -> str:
    """What to tell a user whose GIMP Python lacks pyzmq: the exact command for that Python
    (`command`: the words that run it)."""
    shown = " ".join(f'"{word}"' if " " in word else word for word in command)
    pip = f"`{shown} -m pip install{' --user' if platform != 'win32' else ''} pyzmq`"
    if platform.startswith("linux") and command[0].startswith("/usr/bin/"):
        how = f"on Debian or Ubuntu `sudo apt install python3-zmq`, elsewhere {pip}"
    else:
        how = pip
    return (
        f"The Neural Style plug-in needs pyzmq in the Python that GIMP runs plug-ins with "
        f"({shown}). Install it, then restart GIMP: {how}."
    )
