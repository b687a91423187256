"""How the plug-in starts programs of the user's installation (the bridge, the daemon): with an
environment free of GIMP's own Python settings, and from inside GIMP's Flatpak on the host.
Standard library only: it runs in GIMP's Python."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

FLATPAK_INFO = "/.flatpak-info"  # present in every Flatpak sandbox
FLATPAK_APP = "org.gimp.GIMP"
FLATPAK_GRANT = f"flatpak override --user --talk-name=org.freedesktop.Flatpak {FLATPAK_APP}"

# Variables that tell a Python where its library and packages are, or what to run first: set
# by GIMP's bundles for their own Python, they would break the user's.
_PYTHON_SETTINGS = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "PYTHONUSERBASE",
    "PYTHONPLATLIBDIR",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
    "PYTHONNOUSERBASE",
    "__PYVENV_LAUNCHER__",
)


def clean_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) without the variables that steer a Python."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if key not in _PYTHON_SETTINGS}


def in_flatpak(info_file: str = FLATPAK_INFO) -> bool:
    """Whether this process runs inside a Flatpak sandbox (GIMP's Flatpak)."""
    return os.path.exists(info_file)


def host_command(command: Sequence[str], sandboxed: bool | None = None) -> list[str]:
    """`command` as it runs on the user's system: inside the Flatpak, through
    `flatpak-spawn --host` (which GIMP's Flatpak may use once FLATPAK_GRANT was run)."""
    if sandboxed is None:
        sandboxed = in_flatpak()
    if not sandboxed:
        return list(command)
    # The host's own environment, not the sandbox's: only the runtime folder is passed on,
    # since the daemon's connection file lives there.
    passed = [f"--env={key}={os.environ[key]}" for key in ("XDG_RUNTIME_DIR",) if key in os.environ]
    return ["flatpak-spawn", "--host", "--watch-bus", *passed, *command]


def flatpak_advice(sandboxed: bool | None = None) -> str:
    """The sentence that tells a Flatpak user how to let GIMP start the bridge; "" elsewhere."""
    if not (in_flatpak() if sandboxed is None else sandboxed):
        return ""
    return (
        f" GIMP runs as a Flatpak: let it start programs outside its sandbox with "
        f"`{FLATPAK_GRANT}` in a terminal, then restart GIMP."
    )
