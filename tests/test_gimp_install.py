"""`neural-style install-gimp-plugin`: what lands in GIMP's plug-ins folder, reinstalling,
uninstalling, refusing a folder that is not ours, and the check of GIMP's Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from neural_style_daemon.cli import main
from neural_style_daemon.gimp_install import default_gimp_dir, launcher_shebang


def plugin_dir(gimp_dir):
    return gimp_dir / "plug-ins" / "neural-style"


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
    assert "needs pyzmq" not in out.err
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


def test_a_gimp_python_without_pyzmq_gets_the_command_to_fix_it(tmp_path, capsys):
    # `-S`: no site-packages, so no pyzmq, as in a GIMP whose Python lacks it.
    assert (
        main(
            [
                "install-gimp-plugin",
                "--gimp-dir",
                str(tmp_path),
                "--gimp-python",
                f"{sys.executable} -S",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "needs pyzmq" in err
    assert f"{sys.executable} -S -m pip install" in err


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
