"""The image's install, done for real on this machine: the wheel into a fresh virtualenv, from the runtime lock.

It mirrors the Dockerfile's steps (`pip wheel --no-deps` in the builder; `pip install --require-hashes
-r requirements-runtime.lock`, then the wheel with `--no-deps`, in the final stage), so the deploy
smoke test runs the same packages the image would, and none of the development tools.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.waiting import patience

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_SECONDS = patience(4)


def run(args: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build_wheel(out: Path) -> Path:
    """The project wheel, built from a copy of what a Docker build context holds (no .venv, caches or data)."""
    source = out / "src"
    git = shutil.which("git") or "git"
    listed = [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what `COPY . .` would see
    files = subprocess.run(listed, cwd=ROOT, capture_output=True, check=True).stdout
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


def make_interpreter_reachable_by_others() -> None:
    """Let an unprivileged user run the venv's base interpreter.

    The image's Python lives in /usr/local; here the suite's may live under /root (pyenv), which no
    other user may traverse. Directories on the interpreter's path get the traverse bit for others
    (never read: nothing can be listed), as pgserver does for the directories above its data. The
    bit stays: putting the old mode back would pull the interpreter from under any other suite's
    services still running on this machine.
    """
    real = Path(sys.executable).resolve()
    for directory in [*reversed(real.parents), real.parent]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


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
