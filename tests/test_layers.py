"""Imports go one way. No module of the project imports, however indirectly, a module that
imports it back (a function-level import counts: it only hides a cycle). The protocol package is
a layer of its own: standard library only (the GIMP plug-in imports it inside GIMP's Python), and
it still runs on Python 3.9."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_support import content_image, daemon_env, running_daemon, style_png
from PIL import Image

ROOT = Path(__file__).parents[1]
# Each package of the project, by the folder it lies in: the three installed ones and the GPU
# suite, a harness beside them that imports them.
PACKAGES = {
    "neural_style_daemon": ROOT / "daemon",
    "neural_style_protocol": ROOT / "shared",
    "neural_style_gimp": ROOT / "gimp_plugin",
    "gpu_suite": ROOT,
}
HARNESSES = {"gpu_suite"}
SHARED = ROOT / "shared"
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


def project_modules() -> dict[str, Path]:
    """Every module of the packages by its dotted name (a package by its own name)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in (folder / package).rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules that `module` (its source at `path`) imports, by any import
    statement at any depth: in functions and under TYPE_CHECKING too. `from package import
    name` depends on the submodule `package.name` if there is one, else on the package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*parts, source] if source else parts)
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a function `c`, say
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        module: imported_modules(module, path, set(modules)) for module, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_the_project_imports_itself_back() -> None:
    graph = import_graph()
    assert len(graph) > 80  # all the packages were read
    assert cycles(graph) == []


def test_the_installed_packages_never_import_the_gpu_suite() -> None:
    graph = import_graph()
    assert "gpu_suite.command" in graph
    wrong = {
        module: sorted(t for t in targets if t.split(".")[0] in HARNESSES)
        for module, targets in graph.items()
        if module.split(".")[0] not in HARNESSES
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}


def test_a_cycle_through_a_function_level_import_is_found(tmp_path) -> None:
    source = tmp_path / "remote.py"
    source.write_text(
        "from __future__ import annotations\n"
        "from . import console\n"
        "def stylize():\n"
        "    from .cli import build_parser\n"
        "    import pkg.server.jobs\n"
    )
    modules = {"pkg", "pkg.cli", "pkg.console", "pkg.remote", "pkg.server", "pkg.server.jobs"}
    found = imported_modules("pkg.remote", source, modules)
    assert found == {"pkg.console", "pkg.cli", "pkg.server.jobs"}
    graph = {"pkg.remote": found, "pkg.cli": {"pkg.remote"}, "pkg.console": set()}
    graph |= {"pkg.server.jobs": set()}
    assert cycles(graph) == [["pkg.cli", "pkg.remote"]]


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
    "neural_style_gimp.regions",
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


# `neural-style stylize` as its console script runs it, up to the job. What the daemon does
# needs no torch in the command's own process: importing it takes seconds, the job on a warm
# daemon about one.
STYLIZE_WITHOUT_TORCH = """
import sys
from neural_style_daemon.cli import main, parser_for
from neural_style_daemon.remote import job_params
argv = ["stylize", "c.png", "s.png", "-o", "out.png", "--strength", "30", "--preset", "draft"]
job_params(parser_for(argv).parse_args(argv))
parser_for(["status"]).parse_args(["status"])
parser_for([]).format_help()
if len(sys.argv) > 1:
    code = main(sys.argv[1:])
    assert code == 0, code
print(" ".join(name for name in ("torch", "torchvision") if name in sys.modules))
"""


def test_the_command_line_parses_stylize_without_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", STYLIZE_WITHOUT_TORCH], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_stylize_on_a_running_daemon_imports_no_torch(tmp_path: Path) -> None:
    content, style, output = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "o.png"
    Image.fromarray(content_image(40, 32)[1]).save(content)
    style.write_bytes(style_png())
    runtime = tmp_path / "runtime"
    with running_daemon(runtime):
        argv = ["stylize", str(content), str(style), "-o", str(output), "--iterations", "2"]
        result = subprocess.run(
            [sys.executable, "-c", STYLIZE_WITHOUT_TORCH, *argv],
            env=daemon_env(runtime),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    assert "on the daemon at" in result.stderr
    assert result.stdout.split() == []
    assert output.exists()
