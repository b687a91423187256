"""`neural-style install-gimp-plugin`: what lands in GIMP's plug-ins folder, reinstalling,
uninstalling, refusing a folder that is not ours, the check of GIMP's Python, the bridge for a
Python without pyzmq, and GIMP's Flatpak."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from neural_style_daemon.cli import main
from neural_style_daemon.gimp_install import (
    default_gimp_dir,
    flatpak_gimp_dir,
    is_flatpak_gimp_dir,
    launcher_shebang,
)

BRIDGE = [sys.executable, "-m", "neural_style_gimp.bridge"]
GRANT = "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP"
# Stands in for GIMP 3's `gi` in a Python that has none, so a probe finds everything but pyzmq.
GIMP_GI = """
def require_version(namespace, version):
    if (namespace, version) != ("Gimp", "3.0"):
        raise ValueError(f"Namespace {namespace} not available")
"""


def plugin_dir(gimp_dir):
    return gimp_dir / "plug-ins" / "neural-style"


def modules_folder(folder: Path, **sources: str) -> Path:
    """A folder for PYTHONPATH with one package per keyword (name: its __init__.py)."""
    for name, source in sources.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(source)
    return folder


def install_cli(gimp_dir: Path | None, *extra: str) -> int:
    where = ["--gimp-dir", str(gimp_dir)] if gimp_dir is not None else []
    return main(["install-gimp-plugin", *where, *extra])


def test_install_copies_a_runnable_self_contained_plugin(tmp_path, capsys):
    gimp_dir = tmp_path / "GIMP" / "3.0"
    assert (
        main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir), "--gimp-python", sys.executable])
        == 0
    )
    out = capsys.readouterr()
    folder = plugin_dir(gimp_dir)
    assert f"installed the GIMP plug-in in {folder}" in out.out
    # This Python has pyzmq but not GIMP's gi: said, and the shebang is not pinned to it.
    assert "pyzmq" not in out.out + out.err
    assert "can import GIMP 3's `gi` bindings" in out.err
    launcher = folder / "neural-style.py"
    assert os.access(launcher, os.X_OK)  # GIMP silently skips a plug-in it cannot run
    assert launcher.read_text().startswith("#!/usr/bin/env python3\n")
    assert (folder / "neural_style_gimp" / "plugin.py").is_file()
    assert (folder / "neural_style_protocol" / "client.py").is_file()
    assert not list(folder.rglob("__pycache__"))
    assert not (folder / "neural_style_gimp" / "neural-style.py").exists()
    settings = json.loads((folder / "daemon.json").read_text())
    assert settings["start_command"] == [sys.executable, "-m", "neural_style_daemon.cli", "start"]
    assert settings["bridge_command"] == BRIDGE
    # The copy imports on its own (no site-packages): what GIMP's Python will do with it.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import neural_style_gimp.arguments, "
        "neural_style_gimp.progress, neural_style_gimp.png; "
        "print(neural_style_gimp.arguments.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(folder)], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(str(folder))


def test_reinstall_replaces_the_old_copy_and_uninstall_removes_it(tmp_path, capsys):
    gimp_dir = tmp_path / "gimp"
    assert (
        main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir), "--gimp-python", sys.executable])
        == 0
    )
    stale = plugin_dir(gimp_dir) / "neural_style_gimp" / "from_an_old_version.py"
    stale.write_text("")
    assert (
        main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir), "--gimp-python", sys.executable])
        == 0
    )
    assert not stale.exists()
    assert [p.name for p in (gimp_dir / "plug-ins").iterdir()] == ["neural-style"]
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir), "--uninstall"]) == 0
    assert not plugin_dir(gimp_dir).exists()
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir), "--uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_a_folder_that_is_not_ours_is_left_alone(tmp_path, capsys):
    foreign = plugin_dir(tmp_path)
    foreign.mkdir(parents=True)
    (foreign / "something-else.py").write_text("mine")
    for extra in ([], ["--uninstall"]):
        assert main(["install-gimp-plugin", "--gimp-dir", str(tmp_path), *extra]) == 2
        assert "does not hold this plug-in" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["something-else.py"]
    assert [p.name for p in foreign.parent.iterdir()] == ["neural-style"]  # no leftovers


def test_a_gimp_python_with_gi_and_pyzmq_is_reported_ready(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(modules_folder(tmp_path / "modules", gi=GIMP_GI)))
    assert install_cli(tmp_path / "gimp", "--gimp-python", sys.executable) == 0
    out = capsys.readouterr()
    assert f"  GIMP's Python ({sys.executable}) has GIMP 3's gi and pyzmq\n" in out.out
    assert "bridge" not in out.out
    assert out.err == ""


def test_a_gimp_python_without_pyzmq_reaches_the_daemon_through_the_bridge(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PYTHONPATH", str(modules_folder(tmp_path / "modules", gi=GIMP_GI)))
    # `-S`: no site-packages, so no pyzmq, as in GIMP's own Python on Windows and macOS.
    assert install_cli(tmp_path / "gimp", "--gimp-python", f"{sys.executable} -S") == 0
    out = capsys.readouterr()
    assert (
        f"  GIMP's Python ({sys.executable} -S) cannot import pyzmq: the plug-in reaches the "
        f"daemon through its bridge ({shlex.join(BRIDGE)})\n"
    ) in out.out
    assert "has GIMP 3's gi and pyzmq" not in out.out
    assert out.err == ""  # normal now: no warning, no pip command
    settings = json.loads((plugin_dir(tmp_path / "gimp") / "daemon.json").read_text())
    assert settings["bridge_command"] == BRIDGE


@pytest.mark.parametrize(
    "failure",
    [
        'raise ImportError("zmq/backend/cython/_zmq.so: undefined symbol: PyUnicode_AsUTF8")',
        'raise OSError("libzmq.so.5: cannot open shared object file")',
    ],
)
def test_a_broken_pyzmq_is_treated_as_missing(tmp_path, monkeypatch, capsys, failure):
    # Ahead of this Python's own working pyzmq on the path, as one built for another Python.
    modules = modules_folder(tmp_path / "modules", gi=GIMP_GI, zmq=failure)
    monkeypatch.setenv("PYTHONPATH", str(modules))
    assert install_cli(tmp_path / "gimp", "--gimp-python", sys.executable) == 0
    out = capsys.readouterr()
    assert f"  GIMP's Python ({sys.executable}) cannot import pyzmq" in out.out
    assert "has GIMP 3's gi and pyzmq" not in out.out
    assert out.err == ""


def test_the_recorded_bridge_command_is_this_installations(tmp_path, capsys):
    assert install_cli(tmp_path, "--gimp-python", sys.executable) == 0
    python, flag, module = json.loads((plugin_dir(tmp_path) / "daemon.json").read_text())[
        "bridge_command"
    ]
    assert (python, flag) == (sys.executable, "-m")
    assert os.access(python, os.X_OK)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet, so only its interpreter can be checked")
    subprocess.run(
        [python, "-c", f"import {module}"], stdin=subprocess.DEVNULL, timeout=60, check=True
    )


@pytest.mark.parametrize(
    "python, on_path, shebang",
    [
        (["/usr/bin/python3"], "/usr/bin/python3", "#!/usr/bin/env python3"),
        (["/usr/bin/python3"], "/opt/conda/bin/python3", "#!/usr/bin/python3"),
        (["/usr/bin/python3"], None, "#!/usr/bin/python3"),
        (None, "/opt/conda/bin/python3", "#!/usr/bin/env python3"),
        (["chroot", "/root", "/usr/bin/python3"], None, "#!/usr/bin/env python3"),
    ],
)
def test_the_launcher_is_pinned_to_gimps_python_when_path_finds_another(python, on_path, shebang):
    assert launcher_shebang(python, on_path) == shebang


def test_a_gimp_python_that_does_not_run_is_reported(tmp_path, capsys):
    assert (
        main(
            [
                "install-gimp-plugin",
                "--gimp-dir",
                str(tmp_path),
                "--gimp-python",
                str(tmp_path / "no-python"),
            ]
        )
        == 0
    )
    assert "could not run GIMP's Python" in capsys.readouterr().err


def test_a_plugins_folder_that_cannot_be_made_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["install-gimp-plugin", "--gimp-dir", str(tmp_path / "file" / "gimp")]) == 2
    assert "cannot create the plug-ins folder" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux folder layout")
def test_the_default_gimp_dir_is_the_newest_3x(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_gimp_dir() == tmp_path / "GIMP" / "3.0"
    for version in ("3.0", "3.2", "3.10-backup", "2.10"):
        (tmp_path / "GIMP" / version).mkdir(parents=True)
    assert default_gimp_dir() == tmp_path / "GIMP" / "3.2"


def test_daemon_options_are_recorded_and_checked(tmp_path, capsys):
    assert (
        main(
            [
                "install-gimp-plugin",
                "--gimp-dir",
                str(tmp_path),
                "--gimp-python",
                sys.executable,
                "--daemon-options",
                "--weights /w/vgg16.pth --device cuda:1",
            ]
        )
        == 0
    )
    settings = json.loads((plugin_dir(tmp_path) / "daemon.json").read_text())
    assert settings["start_command"][-5:] == [
        "start",
        "--weights",
        "/w/vgg16.pth",
        "--device",
        "cuda:1",
    ]
    capsys.readouterr()
    assert (
        main(
            [
                "install-gimp-plugin",
                "--gimp-dir",
                str(tmp_path / "other"),
                "--daemon-options",
                "--wieghts x",
            ]
        )
        == 2
    )
    assert "not options of `neural-style start`" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()  # nothing installed with a typo


def flatpak_folder(home: Path, version: str = "3.0") -> Path:
    return home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / version


@pytest.mark.skipif(sys.platform != "linux", reason="GIMP's Flatpak is on Linux")
def test_the_default_gimp_dir_is_gimps_flatpak_only_without_a_native_one(tmp_path, monkeypatch):
    home, config = tmp_path / "home", tmp_path / "config"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    assert flatpak_gimp_dir() is None
    assert default_gimp_dir() == config / "GIMP" / "3.0"
    for version in ("3.0", "3.2", "3.x"):
        flatpak_folder(home, version).mkdir(parents=True)
    assert flatpak_gimp_dir() == flatpak_folder(home, "3.2")
    assert default_gimp_dir() == flatpak_folder(home, "3.2")
    (config / "GIMP" / "3.0").mkdir(parents=True)
    assert default_gimp_dir() == config / "GIMP" / "3.0"  # native wins, even an older one


def fake_python3(folder: Path, log: Path) -> Path:
    """A `python3` for PATH that notes each time it is run, then runs this Python."""
    folder.mkdir()
    script = folder / "python3"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\nexec {sys.executable} "$@"\n'
    )
    script.chmod(0o755)
    return folder


@pytest.mark.skipif(sys.platform != "linux", reason="GIMP's Flatpak is on Linux")
def test_installing_into_gimps_flatpak_tells_the_grant_and_probes_no_python(
    tmp_path, monkeypatch, capsys
):
    home, config, log = tmp_path / "home", tmp_path / "config", tmp_path / "python3-runs"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    bin_folder = fake_python3(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    flatpak = flatpak_folder(home)
    flatpak.mkdir(parents=True)

    assert install_cli(None) == 0
    out = capsys.readouterr()
    assert f"installed the GIMP plug-in in {plugin_dir(flatpak)}\n" in out.out
    assert (
        f"  GIMP's Flatpak reaches the daemon through the plug-in's bridge ({shlex.join(BRIDGE)}), "
        f"which it must be allowed to start on the host; run this once in a terminal:\n"
        f"    {GRANT}\n"
    ) in out.out
    assert "GIMP's Python" not in out.out
    assert out.err == ""
    assert not log.exists()  # the sandbox's Python was not looked for on the host
    assert (
        (plugin_dir(flatpak) / "neural-style.py").read_text().startswith("#!/usr/bin/env python3\n")
    )
    assert json.loads((plugin_dir(flatpak) / "daemon.json").read_text())["bridge_command"] == BRIDGE

    # With a native GIMP folder too, that one is chosen, probed, and the Flatpak's is named.
    (config / "GIMP" / "3.0").mkdir(parents=True)
    assert install_cli(None) == 0
    out = capsys.readouterr()
    assert f"installed the GIMP plug-in in {plugin_dir(config / 'GIMP' / '3.0')}\n" in out.out
    assert (
        f"  GIMP's Flatpak has its own folder {flatpak}: to install there instead, add "
        f"--gimp-dir {flatpak}\n"
    ) in out.out
    assert GRANT not in out.out
    assert log.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no shebangs on Windows")
def test_in_gimps_flatpak_the_launcher_is_never_pinned_to_a_host_python(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PYTHONPATH", str(modules_folder(tmp_path / "modules", gi=GIMP_GI)))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `python3` there: a GIMP Python is pinned
    native, flatpak = tmp_path / "native", flatpak_folder(tmp_path / "home")
    for gimp_dir, shebang in (
        (native, f"#!{sys.executable}\n"),
        (flatpak, "#!/usr/bin/env python3\n"),
    ):
        assert install_cli(gimp_dir, "--gimp-python", sys.executable) == 0
        assert (plugin_dir(gimp_dir) / "neural-style.py").read_text().startswith(shebang)
    assert GRANT in capsys.readouterr().out


@pytest.mark.parametrize(
    "path, inside",
    [
        ("/home/ada/.var/app/org.gimp.GIMP/config/GIMP/3.0", True),
        ("/home/ada/.var/app/org.gimp.GIMP", True),
        ("/home/ada/.config/GIMP/3.0", False),
        ("/home/ada/.var/app/org.kde.krita/config/GIMP/3.0", False),
        ("/home/ada/.var/app/org.gimp.GIMP.Plugin.Foo/config/GIMP/3.0", False),
        ("/home/ada/var/app/org.gimp.GIMP/config/GIMP/3.0", False),
    ],
)
def test_a_flatpak_gimp_dir_is_recognised_by_its_path(path, inside):
    assert is_flatpak_gimp_dir(path) is inside


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_a_flatpak_gimp_dir_is_recognised_relative_or_through_a_link(tmp_path, monkeypatch):
    flatpak = flatpak_folder(tmp_path / "home")
    flatpak.mkdir(parents=True)
    (tmp_path / "gimp").symlink_to(flatpak)
    assert is_flatpak_gimp_dir(tmp_path / "gimp")
    monkeypatch.chdir(tmp_path / "home")
    assert is_flatpak_gimp_dir(".var/app/org.gimp.GIMP/config/GIMP/3.0")
    assert not is_flatpak_gimp_dir(tmp_path)
