"""The client installs alone, runs on the standard library only, and runs on Python 3.9.

The install test never asks a package index (``PIP_NO_INDEX``): ``pip wheel --no-build-isolation``
builds ``./client`` with the project's own setuptools (requirements-dev.txt; build isolation would
download setuptools, and the setuptools that ensurepip puts in a fresh 3.11 venv cannot build wheels
without the ``wheel`` package, which it would download too), then a fresh venv installs that wheel
with ``--no-deps``, which fails if the client declared any dependency.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import KEY_HEX, FakeServer

CLIENT = Path(__file__).resolve().parents[1]  # client/: its pyproject.toml and hbdns_client/
MODULES = sorted(p.stem for p in (CLIENT / "hbdns_client").glob("*.py") if p.stem != "__main__")
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def test_client_needs_only_the_standard_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        + "".join(f"import hbdns_client.{m}\n" for m in MODULES)
        + "new = set(sys.modules) - before\n"
        "third = {m.split('.')[0] for m in new} - set(sys.stdlib_module_names) - {'hbdns_client'}\n"
        "assert not third, third\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)


def _pip_list(python: Path) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True, env={**os.environ, **OFFLINE_PIP},
    )  # fmt: skip
    return {d["name"].lower() for d in json.loads(out.stdout)}


def test_pip_install_client_in_a_clean_venv_installs_exactly_one_distribution(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: building in place would leave build/ and egg-info/ in the checkout
    shutil.copytree(CLIENT, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "tests"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **OFFLINE_PIP}
    before = _pip_list(python)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    [wheel] = wheels.glob("hbdns_client-*.whl")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", str(wheel)], check=True, capture_output=True, env=env
    )
    assert _pip_list(python) - before == {"hbdns-client"}
    for argv in ([str(bindir / "hbdns-client"), "--help"], [str(python), "-m", "hbdns_client", "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "run" in result.stdout and "check" in result.stdout and "78" in result.stdout
    listing = "import hbdns_client, os; print(sorted(os.listdir(os.path.dirname(hbdns_client.__file__))))"
    files = subprocess.run(
        [str(python), "-c", listing], capture_output=True, text=True, cwd=tmp_path, env=env, check=True
    ).stdout
    assert "wire.py" in files and "cli.py" in files and "conftest" not in files


def _python39() -> str | None:
    found = shutil.which("python3.9")
    if found and subprocess.run([found, "-V"], capture_output=True).returncode == 0:
        return found
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    return pyenv[-1] if pyenv else None


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 interpreter on this machine")
def test_runs_on_python_3_9(tmp_path: Path, fake_server: Callable[..., FakeServer]) -> None:
    """Beyond vermin's static check: the real 3.9 imports every module and sends a beat."""
    python = _python39()
    assert python is not None
    env = {"PYTHONPATH": str(CLIENT), "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    subprocess.run([python, "-c", "".join(f"import hbdns_client.{m}\n" for m in MODULES)], check=True, env=env)
    server = fake_server()
    conf = tmp_path / "c.conf"
    conf.write_text(f"server = 127.0.0.1:{server.port}\naccount_id = 7\nkey = {KEY_HEX}\nstate_file = s\n")
    result = subprocess.run(
        [python, "-m", "hbdns_client", "send", "--config", str(conf)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "ok 127.0.0.1\n"), result.stderr
    result = subprocess.run(
        [python, "-m", "hbdns_client", "check", "--config", str(conf)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "result: ok" in result.stdout, result.stdout + result.stderr
