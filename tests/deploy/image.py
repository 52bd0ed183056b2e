"""The image's install, done for real on this machine: the wheel into a fresh virtualenv, from the runtime lock.

It mirrors the Dockerfile's steps (`pip wheel --no-deps` in the builder; `pip install --require-hashes
-r requirements-runtime.lock`, then the wheel with `--no-deps`, in the final stage), so the deploy
smoke test runs the same packages the image would, and none of the development tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_SECONDS = 1800


def run(args: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build_wheel(out: Path) -> Path:
    """The project wheel, built from a copy of the tracked sources (nothing of this checkout's state leaks in)."""
    source = out / "src"
    git = shutil.which("git") or "git"
    files = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    wheels = out / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."],
        cwd=source)
    (wheel,) = wheels.glob("phivault-*.whl")
    return wheel


def install_image(root: Path) -> Path:
    """A virtualenv under `root` holding exactly what the image holds; returns its `bin` directory."""
    wheel = build_wheel(root)
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--require-hashes",
         "-r", str(ROOT / "requirements-runtime.lock")])
    run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-deps", str(wheel)])
    os.chmod(root, 0o755)  # noqa: S103 - the services run as an unprivileged user that must reach the venv
    return venv / "bin"
