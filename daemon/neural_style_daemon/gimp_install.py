"""`neural-style install-gimp-plugin`: put the GIMP 3 plug-in (and the protocol package it
imports) into the user's GIMP plug-ins folder, record how to start this installation's daemon,
and check that GIMP's Python can run it (or, without pyzmq, that the plug-in uses its bridge)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import neural_style_gimp
import neural_style_protocol
from neural_style_gimp.processes import FLATPAK_APP, FLATPAK_GRANT
from neural_style_gimp.settings import SETTINGS_FILE

from . import __version__
from .daemon_cli import add_daemon_commands
from .errors import InvalidInputError

PLUGIN_NAME = "neural-style"  # GIMP wants the folder named as the script, without ".py"
LAUNCHER = f"{PLUGIN_NAME}.py"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", LAUNCHER)


def _newest_gimp3_dir(gimp: Path) -> Path | None:
    """The newest existing 3.x folder in `gimp` (a "GIMP" folder), if any."""
    versions = [
        path for path in gimp.glob("3.*") if re.fullmatch(r"3\.\d+", path.name) and path.is_dir()
    ]
    if versions:
        return max(versions, key=lambda path: int(path.name.split(".")[1]))
    return None


def flatpak_gimp_dir() -> Path | None:
    """The newest GIMP/3.x folder of GIMP's Flatpak, if there is one (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    return _newest_gimp3_dir(Path.home() / ".var" / "app" / FLATPAK_APP / "config" / "GIMP")


def default_gimp_dir() -> Path:
    """The user's GIMP 3 folder: the newest existing GIMP/3.x, else (on Linux) the newest of
    GIMP's Flatpak, else GIMP/3.0."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return _newest_gimp3_dir(base / "GIMP") or flatpak_gimp_dir() or base / "GIMP" / "3.0"


def is_flatpak_gimp_dir(path: Path | str) -> bool:
    """Whether `path` lies in GIMP's Flatpak folder (~/.var/app/org.gimp.GIMP/), as written
    or once its links are followed."""
    absolute = Path(path).expanduser().absolute()
    app_folder = (".var", "app", FLATPAK_APP)
    for parts in (absolute.parts, absolute.resolve().parts):
        if any(parts[i : i + 3] == app_folder for i in range(len(parts))):
            return True
    return False


def gimp_python_candidates() -> list[list[str]]:
    """Pythons GIMP may run plug-ins with: on Linux the `python3` the plug-in's shebang finds,
    then the system's; elsewhere the one GIMP bundles."""
    if sys.platform == "win32":
        root = os.environ.get("PROGRAMFILES", r"C:\Program Files")
        found = sorted(glob.glob(os.path.join(root, "GIMP 3*", "bin", "python*.exe")))[-1:]
    elif sys.platform == "darwin":
        found = sorted(glob.glob("/Applications/GIMP*.app/Contents/MacOS/python3*"))[-1:]
    else:
        found = [
            path
            for path in (shutil.which("python3"), "/usr/bin/python3")
            if path and os.access(path, os.X_OK)
        ]
    return [[path] for path in dict.fromkeys(found)]


# Run by GIMP's Python: which of the plug-in's needs it lacks. pyzmq is imported, not only
# looked up, since one built for another Python is found but fails on import in many ways.
_PROBE = """
missing = []
try:
    import gi
    gi.require_version("Gimp", "3.0")
except (ImportError, ValueError):
    missing.append("gi")
try:
    import zmq
except Exception:
    missing.append("zmq")
print()
print(" ".join(missing))
"""


def missing_modules(command: list[str]) -> set[str] | str:
    """What `command` (a Python) cannot import of GIMP 3's `gi` and pyzmq; a string saying why
    when it cannot be run at all."""
    try:
        finished = subprocess.run(
            [*command, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not run GIMP's Python ({' '.join(command)}): {error}"
    if finished.returncode != 0:
        return (
            f"could not run GIMP's Python ({' '.join(command)}): {finished.stderr.strip()[-300:]}"
        )
    # The last line only: a module may print something of its own on import, so the probe
    # starts a line of its own for its answer.
    return set(finished.stdout.splitlines()[-1].split())


def launcher_shebang(python: list[str] | None, on_path: str | None) -> str:
    """`#!/usr/bin/env python3`, unless GIMP's Python is another one than the `python3` first on
    PATH (a conda or pyenv one without `gi`, say): then that Python by its full path."""
    if (
        python
        and len(python) == 1
        and os.path.isabs(python[0])
        and sys.platform != "win32"
        and python[0] != on_path
    ):
        return f"#!{python[0]}"
    return "#!/usr/bin/env python3"


def start_command(options: str = "") -> list[str]:
    """How the plug-in starts this installation's daemon, with `options` of `start` (e.g.
    "--weights PATH" for an offline checkpoint), checked here so a typo fails now, not in GIMP."""
    words = shlex.split(options)
    if words:
        parser = argparse.ArgumentParser(prog="neural-style")
        add_daemon_commands(parser.add_subparsers(metavar="COMMAND"))
        try:
            parser.parse_args(["start", *words])
        except SystemExit:  # argparse has said what is wrong
            raise InvalidInputError(
                f"--daemon-options {options!r}: not options of "
                f"`neural-style start` (see its --help)"
            ) from None
    return [sys.executable, "-m", "neural_style_daemon.cli", "start", *words]


def bridge_command() -> list[str]:
    """How the plug-in starts this installation's bridge, when GIMP's Python has no pyzmq."""
    return [sys.executable, "-m", "neural_style_gimp.bridge"]


def install(
    gimp_dir: Path,
    shebang: str = "#!/usr/bin/env python3",
    command: list[str] | None = None,
    bridge: list[str] | None = None,
) -> Path:
    """Copy the plug-in into gimp_dir/plug-ins/neural-style, replacing an earlier copy whole
    (built beside it, then swapped in, so GIMP never sees half a plug-in)."""
    plug_ins = gimp_dir / "plug-ins"
    try:
        plug_ins.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInputError(
            f"cannot create the plug-ins folder {plug_ins}: {error.strerror}"
        ) from None
    target = plug_ins / PLUGIN_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-", dir=plug_ins))
    try:
        for package in (neural_style_gimp, neural_style_protocol):
            assert package.__file__ is not None  # regular packages: each has an __init__.py
            source = Path(package.__file__).parent
            shutil.copytree(source, staging / source.name, ignore=_IGNORE)
        launcher = staging / LAUNCHER
        script = (Path(neural_style_gimp.__file__).parent / LAUNCHER).read_text(encoding="utf-8")
        launcher.write_text(shebang + "\n" + script.split("\n", 1)[1], encoding="utf-8")
        launcher.chmod(0o755)  # GIMP skips a plug-in it cannot execute, silently
        settings = {
            "start_command": command or start_command(),
            "bridge_command": bridge or bridge_command(),
            "version": __version__,
        }
        (staging / SETTINGS_FILE).write_text(
            json.dumps(settings, indent=2) + "\n", encoding="utf-8"
        )
        staging.chmod(0o755)
        if target.exists():
            _check_ours(target)
            old = target.with_name(f".{PLUGIN_NAME}-old-{os.getpid()}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_ours(folder: Path) -> None:
    if not (folder / LAUNCHER).is_file():
        raise InvalidInputError(
            f"{folder} exists but does not hold this plug-in: move it away "
            f"first (nothing was changed)"
        )


def uninstall(gimp_dir: Path) -> Path | None:
    """Remove the plug-in's folder; None if it was not installed there."""
    target = gimp_dir / "plug-ins" / PLUGIN_NAME
    if not target.exists():
        return None
    _check_ours(target)
    shutil.rmtree(target)
    return target


@dataclass(frozen=True)
class GimpPython:
    command: list[str] | None  # None: none found, or it does not run
    missing: frozenset[str]  # of "gi" and "zmq"; without "zmq" the plug-in uses its bridge
    warnings: tuple[str, ...]


def choose_gimp_python(given: str | None) -> GimpPython:
    """GIMP's Python (the one given, else the first candidate with GIMP 3's `gi`), what it
    lacks and what to tell the user about that."""
    candidates = [shlex.split(given)] if given else gimp_python_candidates()
    if not candidates:
        return GimpPython(
            None,
            frozenset(),
            (
                "could not find the Python GIMP runs plug-ins with, so could not check it; name "
                "it with --gimp-python",
            ),
        )
    found = [(command, missing_modules(command)) for command in candidates]
    usable = [
        (command, missing)
        for command, missing in found
        if not isinstance(missing, str) and "gi" not in missing
    ]
    python, missing = usable[0] if usable else found[0]
    if isinstance(missing, str):
        return GimpPython(None, frozenset(), (missing,))
    warnings = []
    if "gi" in missing:
        tried = ", ".join(" ".join(command) for command, _ in found)
        warnings.append(
            f"no Python here can import GIMP 3's `gi` bindings (tried {tried}), so "
            f"GIMP will not list the plug-in: install GIMP 3 with its Python "
            f"support (Debian, Ubuntu: `sudo apt install gimp python3-gi "
            f"gir1.2-gimp-3.0`), or name GIMP's Python with --gimp-python"
        )
    return GimpPython(python, frozenset(missing), tuple(warnings))


def run_install(args) -> int:
    gimp_dir = args.gimp_dir or default_gimp_dir()
    if args.uninstall:
        removed = uninstall(gimp_dir)
        print(
            f"removed {removed}; restart GIMP"
            if removed
            else f"the plug-in is not installed in {gimp_dir / 'plug-ins'}: nothing to remove"
        )
        return 0
    command = start_command(args.daemon_options or "")
    bridge = bridge_command()
    flatpak = is_flatpak_gimp_dir(gimp_dir)
    # The Flatpak's Python runs only inside its sandbox, so it is checked only when named.
    python = choose_gimp_python(args.gimp_python) if args.gimp_python or not flatpak else None
    # The shebang is pinned only to a Python that can run the plug-in at all, and never in the
    # Flatpak, where the host's paths do not exist.
    pinned = (
        python.command
        if python is not None and "gi" not in python.missing and not flatpak
        else None
    )
    target = install(gimp_dir, launcher_shebang(pinned, shutil.which("python3")), command, bridge)
    print(f"installed the GIMP plug-in in {target}")
    print(f"  it starts the daemon with: {shlex.join(command)}")
    if python is not None:
        _report_gimp_python(python, bridge)
    if flatpak:
        print(
            f"  GIMP's Flatpak reaches the daemon through the plug-in's bridge "
            f"({shlex.join(bridge)}), which it must be allowed to start on the host; run this "
            f"once in a terminal:"
        )
        print(f"    {FLATPAK_GRANT}")
    elif args.gimp_dir is None and (other := flatpak_gimp_dir()) is not None:
        print(
            f"  GIMP's Flatpak has its own folder {other}: to install there instead, add "
            f"--gimp-dir {shlex.quote(str(other))}"
        )
    print("Restart GIMP, then find it under Filters > Artistic > Neural Style...")
    return 0


def _report_gimp_python(python: GimpPython, bridge: list[str]) -> None:
    for warning in python.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if python.command is None:
        return
    shown = " ".join(python.command)
    if "zmq" in python.missing:
        print(
            f"  GIMP's Python ({shown}) cannot import pyzmq: the plug-in reaches the daemon "
            f"through its bridge ({shlex.join(bridge)})"
        )
    elif not python.missing:
        print(f"  GIMP's Python ({shown}) has GIMP 3's gi and pyzmq")


def add_install_command(subparsers) -> None:
    p = subparsers.add_parser(
        "install-gimp-plugin",
        help="install the GIMP 3 plug-in for this user",
        description="Copy the GIMP 3 plug-in into your GIMP plug-ins folder and record how it "
        "starts this installation's daemon.",
    )
    p.add_argument(
        "--gimp-dir",
        type=Path,
        metavar="DIR",
        help="GIMP's user folder (default: the newest GIMP/3.x under your configuration "
        "folder, else GIMP's Flatpak's under ~/.var/app/org.gimp.GIMP)",
    )
    p.add_argument(
        "--gimp-python",
        metavar="COMMAND",
        help="the Python GIMP runs plug-ins with, to check it has GIMP's gi and "
        "pyzmq; without pyzmq the plug-in uses its bridge (default: found by platform; none "
        "for GIMP's Flatpak)",
    )
    p.add_argument(
        "--daemon-options",
        metavar="OPTIONS",
        help="options of `neural-style start` for the daemon the plug-in starts, "
        'e.g. "--weights ~/vgg16.pth --device cuda:1"',
    )
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.set_defaults(handler=run_install)
