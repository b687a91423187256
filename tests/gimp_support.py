"""Real GIMP 3 for the plug-in's end-to-end tests: made available by tests/gimp/setup-gimp3.sh
(installed on Debian 13, in a debootstrap root on Debian 12), driven in batch mode with
`gimp-console-3.0`, each test in its own folder inside the root that both sides can read."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from daemon_support import DaemonProcess, style_png, wait_until

HERE = Path(__file__).parent / "gimp"
SETUP_SCRIPT = HERE / "setup-gimp3.sh"
BATCH_HELPERS = HERE / "batch_helpers.py"
SETUP_TIMEOUT = 900  # seconds: a fresh root downloads about 130 MB
GIMP_TIMEOUT = 180
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Gimp3:
    """Where GIMP 3 runs: `root` is "/" when this machine has it, else a Debian 13 root."""

    root: Path

    def inside(self, host_path: Path) -> str:
        """A host path under the root as GIMP sees it."""
        if self.root == Path("/"):
            return str(host_path)
        return "/" + str(Path(host_path).relative_to(self.root))

    def python(self) -> str:
        """The command that runs GIMP's Python (what the plug-in's shebang finds)."""
        here = self.root == Path("/")
        return "/usr/bin/python3" if here else f"chroot {self.root} /usr/bin/python3"

    @contextlib.contextmanager
    def sharing(self, *folders: Path):
        """These folders of this machine, bound at the same paths inside the root (so that a
        command recorded here, like this installation's Python, runs inside); unbound after."""
        bound = []
        try:
            for folder in dict.fromkeys(Path(f).resolve() for f in folders):
                if self.root == Path("/"):
                    continue
                target = self.root / folder.relative_to("/")
                target.mkdir(parents=True, exist_ok=True)
                subprocess.run(["mount", "--bind", str(folder), str(target)], check=True)
                bound.append(target)
            yield
        finally:
            for target in reversed(bound):
                if subprocess.run(["umount", str(target)]).returncode != 0:
                    subprocess.run(["umount", "-l", str(target)])  # busy: detach it anyway

    def command(self, argv: list[str], env: dict[str, str]) -> list[str]:
        clean = [
            "/usr/bin/env",
            "-i",
            f"PATH={_PATH}",
            "LANG=C.UTF-8",
            *(f"{key}={value}" for key, value in env.items()),
            *argv,
        ]
        return clean if self.root == Path("/") else ["chroot", str(self.root), *clean]


def setup_gimp3() -> tuple[Gimp3 | None, str]:
    """GIMP 3 ready to run, or None and the reason it cannot be here."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return None, "the GIMP 3 tests need Linux and root (debootstrap, chroot, apt-get)"
    try:
        done = subprocess.run(
            ["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=SETUP_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return None, f"setting up GIMP 3 took over {SETUP_TIMEOUT} s"
    if done.returncode != 0:
        return None, (done.stderr.strip() or done.stdout.strip())[-2000:]
    return Gimp3(Path(done.stdout.strip().splitlines()[-1])), ""


def gimp3_or_skip() -> Gimp3:
    """GIMP 3 for a test; a skip with the reason where it cannot be set up, except in CI (CI
    set), which must run the real-GIMP tests: there it is a failure."""
    import pytest

    gimp, reason = setup_gimp3()
    if gimp is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-GIMP tests, but: {reason}")
        pytest.skip(f"GIMP 3 is not available here: {reason}")
    return gimp


# A HOME in which GIMP has run once, without this plug-in, for each root: made once per run.
_USED_HOMES: dict[Path, Path] = {}


def _used_home(gimp: Gimp3) -> Path:
    """A HOME where GIMP has already run once (without this plug-in), removed when the tests
    end. GIMP's first start in a HOME queries all of its own plug-ins, about 120 of them: 6 to
    8 s of every workspace's first batch on a 2-core machine. Started from a copy of this one,
    GIMP trusts its pluginrc (and the language recorded in gimprc) and queries only what is
    new, the plug-in under test: as for a user who had run GIMP before installing it."""
    if gimp.root not in _USED_HOMES:
        base = gimp.root / "tmp" if gimp.root != Path("/") else Path("/tmp")
        home = base / f"neural-style-test-home-{uuid.uuid4().hex[:12]}"
        home.mkdir(parents=True)
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        done = subprocess.run(
            gimp.command(
                ["gimp-console-3.0", "-i", "-d", "-f", "--quit"], {"HOME": gimp.inside(home)}
            ),
            capture_output=True,
            text=True,
            timeout=GIMP_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        pluginrc = home / ".config" / "GIMP" / "3.0" / "pluginrc"
        assert done.returncode == 0 and pluginrc.is_file(), (
            done.stdout[-3000:] + done.stderr[-3000:]
        )
        _USED_HOMES[gimp.root] = home
    return _USED_HOMES[gimp.root]


class GimpWorkspace:
    """A folder inside GIMP's root for one group of tests: a HOME for GIMP (with the plug-in
    installed there), a runtime folder for the daemon's connection file, and files. The HOME
    starts as one where GIMP has run before (see _used_home)."""

    def __init__(self, gimp: Gimp3) -> None:
        self.gimp = gimp
        base = gimp.root / "tmp" if gimp.root != Path("/") else Path("/tmp")
        self.folder = base / f"neural-style-test-{uuid.uuid4().hex[:12]}"
        self.home = self.folder / "home"
        self.runtime = self.folder / "run"
        self.folder.mkdir(parents=True)
        shutil.copytree(_used_home(gimp), self.home, symlinks=True)
        self.runtime.mkdir(mode=0o700)
        shutil.copy(BATCH_HELPERS, self.folder / "batch_helpers.py")

    def install_plugin(self) -> None:
        """`neural-style install-gimp-plugin` into this HOME's GIMP folder, as a user would."""
        from neural_style_daemon.cli import main

        assert (
            main(
                [
                    "install-gimp-plugin",
                    "--gimp-dir",
                    str(self.gimp_dir),
                    "--gimp-python",
                    self.gimp.python(),
                ]
            )
            == 0
        )

    @property
    def gimp_dir(self) -> Path:
        return self.home / ".config" / "GIMP" / "3.0"

    @property
    def plugin_dir(self) -> Path:
        return self.gimp_dir / "plug-ins" / "neural-style"

    def write_pixels(self, name: str, pixels: np.ndarray) -> str:
        """Save RGBA pixels for the batch code to load; their path inside the root."""
        path = self.folder / f"{name}.raw"
        path.write_bytes(np.ascontiguousarray(pixels, np.uint8).tobytes())
        return self.gimp.inside(path)

    def batch_command(
        self,
        code: str,
        runtime: Path | None = None,
        display: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> list[str]:
        """GIMP running `code` (Python, with batch_helpers' names imported and FOLDER set), then
        quitting: gimp-console-3.0, or the full GIMP on `display`; `extra_env` is set for GIMP
        and so for its plug-ins. A failing batch exits 64."""
        script = self.folder / f"batch-{uuid.uuid4().hex[:8]}.py"
        inside = self.gimp.inside(self.folder)
        script.write_text(
            f"import sys\nsys.path.insert(0, {inside!r})\n"
            f"from batch_helpers import *\nFOLDER = {inside!r}\n{code}\n"
        )
        env = {
            "HOME": self.gimp.inside(self.home),
            "XDG_RUNTIME_DIR": self.gimp.inside(runtime or self.runtime),
            # For a daemon the plug-in starts (it inherits GIMP's environment), as daemon_env
            # does for the tests' own: OpenMP threads that spin on the shared cores made its
            # jobs several times slower.
            "OMP_NUM_THREADS": "1",
            **(extra_env or {}),
        }
        gimp = ["gimp-console-3.0", "-i"]
        if display is not None:
            env["DISPLAY"], gimp = display, ["gimp-3.0"]
        return self.gimp.command(
            [
                *gimp,
                "-d",
                "-f",
                "--batch-interpreter=python-fu-eval",
                "-b",
                f"exec(open({self.gimp.inside(script)!r}).read())",
                "--quit",
            ],
            env,
        )

    def run_batch(
        self,
        code: str,
        runtime: Path | None = None,
        timeout: float = GIMP_TIMEOUT,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.batch_command(code, runtime, extra_env=extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def report(self) -> dict:
        return json.loads((self.folder / "report.json").read_text())

    def layers(self, tag: str) -> list[dict]:
        """The layers `dump(image, FOLDER, tag)` wrote, top first, with their pixels."""
        facts = json.loads((self.folder / f"{tag}.json").read_text())
        for index, layer in enumerate(facts):
            raw = (self.folder / f"{tag}.{index}.raw").read_bytes()
            layer["pixels"] = np.frombuffer(raw, np.uint8).reshape(
                layer["height"], layer["width"], 4
            )
            mask = self.folder / f"{tag}.{index}.raw.mask"
            if mask.exists():
                layer["mask_pixels"] = np.frombuffer(mask.read_bytes(), np.uint8).reshape(
                    layer["height"], layer["width"]
                )
        return facts

    def composite(self, tag: str, width: int, height: int) -> np.ndarray:
        raw = (self.folder / f"{tag}.composite.raw").read_bytes()
        return np.frombuffer(raw, np.uint8).reshape(height, width, 4)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def plugin_workspace(gimp: Gimp3):
    """A workspace with the plug-in installed and a 64 px style file, removed afterwards."""
    space = GimpWorkspace(gimp)
    space.install_plugin()
    (space.folder / "style.png").write_bytes(style_png(64, 64))
    try:
        yield space
    finally:
        space.remove()


@contextlib.contextmanager
def batch_session(gimp: Gimp3, session_code: Callable[[GimpWorkspace], str]):
    """One GIMP batch run of `session_code(space)` against a daemon of its own, for a module
    whose tests each read their part of what it wrote: (the workspace, its report)."""
    with plugin_workspace(gimp) as space:
        daemon = DaemonProcess(space.runtime)
        try:
            daemon.wait_listening()
            done = space.run_batch(session_code(space))
        finally:
            daemon.terminate()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield space, space.report()


class VirtualScreen:
    """Xvfb inside GIMP's root, and xdotool and ImageMagick's `import` to look and click."""

    def __init__(self, gimp: Gimp3) -> None:
        self.gimp = gimp
        sockets = (gimp.root if gimp.root != Path("/") else Path("/")) / "tmp" / ".X11-unix"
        number = next(n for n in range(90, 200) if not (sockets / f"X{n}").exists())
        self.display = f":{number}"
        self.process = subprocess.Popen(
            gimp.command(
                ["Xvfb", self.display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"], {}
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: (sockets / f"X{number}").exists(), 30, "Xvfb to start", interval=0.2)

    def run(self, *argv: str) -> str:
        done = subprocess.run(
            self.gimp.command(list(argv), {"DISPLAY": self.display}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout if done.returncode == 0 else ""

    def window(self, name: str, timeout: float) -> str:
        """The id of the first window whose title matches the regular expression `name`."""
        found = wait_until(
            lambda: self.run("xdotool", "search", "--name", name).split(),
            timeout,
            f"a window named {name!r}",
            interval=0.2,
        )
        return found[0]

    def is_shown(self, window: str) -> bool:
        """Whether the window with this id is still mapped on the screen."""
        return window in self.run("xdotool", "search", "--onlyvisible", "--name", ".").split()

    def size(self, window: str) -> tuple[int, int]:
        shell = dict(
            line.split("=", 1)
            for line in self.run("xdotool", "getwindowgeometry", "--shell", window).split()
        )
        return int(shell["WIDTH"]), int(shell["HEIGHT"])

    def click(self, window: str, x: int, y: int) -> None:
        # A click, not a key: without a window manager key presses did not reach buttons.
        self.run("xdotool", "mousemove", "--window", window, str(x), str(y), "click", "1")

    def keys(self, window: str, keys: str) -> None:
        self.run("xdotool", "windowfocus", "--sync", window)
        self.run("xdotool", "key", keys)

    def screenshot(self, window: str, path_inside: str) -> None:
        self.run("import", "-window", window, path_inside)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def content(width: int, height: int, seed: int = 0, alpha: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    rgb = np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255)
    a = rng.integers(0, 256, (height, width)) if alpha else np.full((height, width), 255)
    a[: height // 3, : width // 3] = 0 if alpha else 255
    return np.dstack([rgb, a]).astype(np.uint8)


def stop_daemon_in(connection_file: Path) -> bool:
    """Stop the daemon a connection file names (SIGTERM, then wait); whether there was one."""
    try:
        pid = json.loads(connection_file.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return False
    os.kill(pid, signal.SIGTERM)
    wait_until(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ),
        60,
        "the started daemon to exit",
    )
    return True


def processes_running(script: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if script.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
