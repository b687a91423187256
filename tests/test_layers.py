"""The protocol package is a layer of its own: standard library only (the GIMP plug-in imports it
inside GIMP's Python), and it still runs on Python 3.9."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).parents[1] / "shared"
PACKAGE = SHARED / "neural_style_protocol"
MODULES = sorted(
    f"neural_style_protocol.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"
)
# The transport and the client import pyzmq; the pure modules must never need it.
TRANSPORT_MODULES = {"neural_style_protocol.transport", "neural_style_protocol.client"}

# Run in a fresh interpreter: what importing every pure module adds to sys.modules.
NEW_MODULES = """
import sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
print("\\n".join(sorted(set(sys.modules) - before)))
"""

# A round trip on the oldest Python GIMP may bring, importing the package from its folder.
ROUND_TRIP = """
import sys
sys.path.insert(0, sys.argv[1])
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Submit
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import deserialize, serialize
import neural_style_protocol.connection
message = Submit("job", RawImage(bytes(16), 2, 2), (b"png",), JobParams(style_weights=(1,)))
assert deserialize(serialize(message, b"key"), b"key", ReplayGuard()) == message
print("ok", sys.version_info[:2])
"""


def test_the_pure_modules_import_only_the_standard_library() -> None:
    pure = [m for m in MODULES if m not in TRANSPORT_MODULES]
    result = subprocess.run(
        [sys.executable, "-c", NEW_MODULES, "neural_style_protocol", *pure],
        capture_output=True,
        text=True,
        check=True,
    )
    added = {name.split(".")[0] for name in result.stdout.split()}
    foreign = added - set(sys.stdlib_module_names) - {"neural_style_protocol"}
    assert not foreign, f"non-standard imports: {sorted(foreign)}"
    assert not added & {"torch", "numpy", "PIL", "zmq", "gi"}


def python39() -> str | None:
    """A working Python 3.9 interpreter, if this machine has one."""
    candidates = [
        os.environ.get("NEURAL_STYLE_PYTHON39"),
        shutil.which("python3.9"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python"))),
    ]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and version.stdout.strip() == "(3, 9)":
            return candidate
    return None


def test_the_package_runs_on_python_3_9() -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no Python 3.9 here (set NEURAL_STYLE_PYTHON39 to one)")
    result = subprocess.run(
        [interpreter, "-I", "-c", ROUND_TRIP, str(SHARED)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok (3, 9)")


# GIMP's Python may lack pyzmq in a test environment, so the pyzmq modules are compiled there
# rather than imported: 3.10-only syntax would fail here.
COMPILE = """
import sys
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as source:
        compile(source.read(), path, "exec")
print("ok")
"""


def test_the_pyzmq_modules_compile_on_python_3_9() -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no Python 3.9 here (set NEURAL_STYLE_PYTHON39 to one)")
    paths = [str(PACKAGE / f"{name.rsplit('.', 1)[1]}.py") for name in sorted(TRANSPORT_MODULES)]
    result = subprocess.run(
        [interpreter, "-I", "-c", COMPILE, *paths], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# The plug-in's own package runs in GIMP's Python too: its logic modules need only the standard
# library and the protocol (the bridge's plug-in end included: it is what a GIMP without pyzmq
# runs); `daemon_link` and the bridge itself add pyzmq, `plugin` GIMP's `gi`.
PLUGIN_PACKAGE = Path(__file__).parents[1] / "gimp_plugin" / "neural_style_gimp"
PLUGIN_LOGIC = [
    "neural_style_gimp.arguments",
    "neural_style_gimp.bridge_client",
    "neural_style_gimp.bridge_pipe",
    "neural_style_gimp.errors",
    "neural_style_gimp.link",
    "neural_style_gimp.png",
    "neural_style_gimp.processes",
    "neural_style_gimp.progress",
    "neural_style_gimp.settings",
]


def test_the_plugin_logic_imports_only_the_standard_library_and_the_protocol() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NEW_MODULES, *PLUGIN_LOGIC],
        capture_output=True,
        text=True,
        check=True,
    )
    added = {name.split(".")[0] for name in result.stdout.split()}
    foreign = added - set(sys.stdlib_module_names) - {"neural_style_protocol", "neural_style_gimp"}
    assert not foreign, f"non-standard imports: {sorted(foreign)}"


def test_the_plugin_compiles_on_python_3_9() -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no Python 3.9 here (set NEURAL_STYLE_PYTHON39 to one)")
    paths = sorted(str(path) for path in PLUGIN_PACKAGE.glob("*.py"))
    result = subprocess.run(
        [interpreter, "-I", "-c", COMPILE, *paths], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
