"""`neural-style install-gimp-plugin`: put the GIMP 3 plug-in (and the protocol package it
imports) into the user's GIMP plug-ins folder, record how to start this installation's daemon,
and check that GIMP's Python can run it."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import neural_style_gimp
import neural_style_protocol
from neural_style_gimp.daemon_link import SETTINGS_FILE
from neural_style_gimp.errors import zmq_missing_message

from . import __version__
from .errors import InvalidInputError

PLUGIN_NAME = "neural-style"  # GIMP wants the folder named as the script, without ".py"
LAUNCHER = f"{PLUGIN_NAME}.py"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", LAUNCHER)


def default_gimp_dir() -> Path:
    """The user's GIMP 3 folder: the newest existing GIMP/3.x, else GIMP/3.0."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    versions = [path for path in (base / "GIMP").glob("3.*")
                if re.fullmatch(r"3\.\d+", path.name) and path.is_dir()]
    if versions:
        return max(versions, key=lambda path: int(path.name.split(".")[1]))
    return base / "GIMP" / "3.0"


def default_gimp_python() -> list[str] | None:
    """The Python GIMP runs plug-ins with: on Linux the `python3` the plug-in's shebang finds,
    elsewhere the one GIMP bundles; None when it cannot be found."""
    if sys.platform == "win32":
        root = os.environ.get("PROGRAMFILES", r"C:\Program Files")
        found = sorted(glob.glob(os.path.join(root, "GIMP 3*", "bin", "python*.exe")))
    elif sys.platform == "darwin":
        found = sorted(glob.glob("/Applications/GIMP*.app/Contents/MacOS/python3*"))
    else:
        found = [path for path in [shutil.which("python3")] if path]
    return [found[-1]] if found else None


def start_command() -> list[str]:
    """How the plug-in starts this installation's daemon."""
    return [sys.executable, "-m", "neural_style_daemon.cli", "start"]


def install(gimp_dir: Path) -> Path:
    """Copy the plug-in into gimp_dir/plug-ins/neural-style, replacing an earlier copy whole
    (built beside it, then swapped in, so GIMP never sees half a plug-in)."""
    plug_ins = gimp_dir / "plug-ins"
    try:
        plug_ins.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInputError(f"cannot create the plug-ins folder {plug_ins}: "
                                f"{error.strerror}") from None
    target = plug_ins / PLUGIN_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-", dir=plug_ins))
    try:
        for package in (neural_style_gimp, neural_style_protocol):
            source = Path(package.__file__).parent
            shutil.copytree(source, staging / source.name, ignore=_IGNORE)
        launcher = staging / LAUNCHER
        shutil.copy2(Path(neural_style_gimp.__file__).parent / LAUNCHER, launcher)
        launcher.chmod(0o755)  # GIMP skips a plug-in it cannot execute, silently
        settings = {"start_command": start_command(), "version": __version__}
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n",
                                             encoding="utf-8")
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
        raise InvalidInputError(f"{folder} exists but does not hold this plug-in: move it away "
                                f"first (nothing was changed)")


def uninstall(gimp_dir: Path) -> Path | None:
    """Remove the plug-in's folder; None if it was not installed there."""
    target = gimp_dir / "plug-ins" / PLUGIN_NAME
    if not target.exists():
        return None
    _check_ours(target)
    shutil.rmtree(target)
    return target


def check_gimp_python(command: list[str]) -> str | None:
    """None if `command` (GIMP's Python) can import what the plug-in needs; else the advice."""
    shown = " ".join(command)
    try:
        finished = subprocess.run([*command, "-c", "import zmq"], capture_output=True,
                                  timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not run GIMP's Python ({shown}): {error}"
    if finished.returncode != 0:
        return zmq_missing_message(command, sys.platform)
    return None


def run_install(args) -> int:
    gimp_dir = args.gimp_dir or default_gimp_dir()
    if args.uninstall:
        removed = uninstall(gimp_dir)
        print(f"removed {removed}; restart GIMP" if removed else
              f"the plug-in is not installed in {gimp_dir / 'plug-ins'}: nothing to remove")
        return 0
    target = install(gimp_dir)
    print(f"installed the GIMP plug-in in {target}")
    print(f"  it starts the daemon with: {shlex.join(start_command())}")
    python = shlex.split(args.gimp_python) if args.gimp_python else default_gimp_python()
    if python is None:
        print("  could not find GIMP's Python to check that it has pyzmq; give it with "
              "--gimp-python", file=sys.stderr)
    else:
        problem = check_gimp_python(python)
        if problem:
            print(f"warning: {problem}", file=sys.stderr)
        else:
            print(f"  GIMP's Python ({' '.join(python)}) has pyzmq")
    print("Restart GIMP, then find it under Filters > Artistic > Neural Style...")
    return 0


def add_install_command(subparsers) -> None:
    p = subparsers.add_parser(
        "install-gimp-plugin", help="install the GIMP 3 plug-in for this user",
        description="Copy the GIMP 3 plug-in into your GIMP plug-ins folder and record how it "
                    "starts this installation's daemon.")
    p.add_argument("--gimp-dir", type=Path, metavar="DIR",
                   help="GIMP's user folder (default: the newest GIMP/3.x under your "
                        "configuration folder)")
    p.add_argument("--gimp-python", metavar="COMMAND",
                   help="the Python GIMP runs plug-ins with, to check it has pyzmq (default: "
                        "found by platform)")
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.set_defaults(handler=run_install)

