"""The Linux bundle: built by installers/build_linux.sh, it passes its self-test, and its .deb
installs a menu entry that points at the installed binary.

Slow (a PyInstaller build, a few minutes; the bundle uses this machine's llama.cpp, not the
portable build `make package` makes by default, which takes 20-30 minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "build" / "dist" / "SmallThinker" / "smallthinker"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb is needed to build the .deb"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    env = dict(os.environ, PORTABLE="0")
    env.pop("QT_QPA_PLATFORM", None)
    done = subprocess.run(
        ["installers/build_linux.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    debs = sorted((ROOT / "build").glob("smallthinker-desktop_*_amd64.deb"))
    assert BUNDLE.is_file() and debs
    return debs[-1]


def test_the_frozen_app_passes_its_self_test(built, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "PYTHONPATH")}
    env["HOME"] = str(tmp_path)  # nothing of the user's is read or written
    done = subprocess.run([str(BUNDLE), "--self-test"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("self-test passed: tiny.gguf loaded in")
    assert not (tmp_path / ".local" / "share" / "SmallThinker").exists()


def test_the_deb_installs_a_menu_entry_pointing_at_the_installed_binary(built, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(built), str(tmp_path)], check=True)
    entry = (tmp_path / "usr/share/applications/smallthinker.desktop").read_text(encoding="utf-8")
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    binary = exec_line.split("=", 1)[1].split()[0]
    assert binary == "/opt/smallthinker/smallthinker"
    assert (tmp_path / binary.lstrip("/")).is_file() and os.access(tmp_path / binary.lstrip("/"), os.X_OK)
    assert (tmp_path / "usr/share/icons/hicolor/scalable/apps/smallthinker.svg").is_file()
    info = subprocess.run(["dpkg-deb", "-f", str(built), "Package", "Version"], capture_output=True, text=True)
    assert info.stdout.splitlines()[0] == "Package: smallthinker-desktop"
