"""The layout's one rule that code can break unnoticed: a service imports the shared core (``hbdns``),
the client's wire format (``hbdns_client``) and itself, never another service; the core imports no
service. Checked on the source (lazy imports inside functions included), so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (
    "pdns_backend",
    "heartbeat_listener",
    "update_api",
    "sweeper",
    "notifier",
    "neutral_host",
    "backup_mx",
    "admin",
)


def _imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update((str(path.relative_to(ROOT)), name) for name in names)
    return found


@pytest.mark.parametrize("package", [*SERVICES, "hbdns"])
def test_no_package_imports_another_service(package: str) -> None:
    imports = _imports(package)
    assert imports, f"no imports found in {package}: wrong path?"
    crossing = sorted((path, name) for path, name in imports if name.split(".")[0] in set(SERVICES) - {package})
    assert crossing == [], f"{package} imports another service: {crossing}"
