"""The import rule that the folder listing promises (README, "Layout"), checked on every module's imports, the lazy
ones inside functions included:

    schemas       imports no other package of the project (the event contract)
    signalements  the platform: imports only schemas
    producers, streams, consumers
                  the flow: schemas, the platform, their own package, and the two domain modules that the intake
                  and the consumers share with the worker (FLOW_SHARED)
    ops           operator tools: anything above but the development kit and the command line
    devkit        the development kit: anything but the command line
    cli           the command line: anything; nothing imports it
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from signalements.settings import PROJECT_ROOT

FLOW = {"producers", "streams", "consumers"}
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "signalements": {"schemas"},
    "producers": {"schemas", "signalements"},
    "streams": {"schemas", "signalements"},
    "consumers": {"schemas", "signalements"},
    "ops": {"schemas", "signalements", *FLOW},
    "devkit": {"schemas", "signalements", *FLOW, "ops"},
    "cli": {"schemas", "signalements", *FLOW, "ops", "devkit"},
}
# One normalization and one jurisdiction lookup: the intake rejects at the door what the worker could not
# normalize, and a unit's consumers list the units of a département from the same reference as the worker.
FLOW_SHARED = {"streams.normalize", "streams.jurisdiction"}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ALLOWED}


def violations(package: str, root: Path = PROJECT_ROOT) -> list[str]:
    wrong = []
    for path in sorted((root / package).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for target in sorted(imported_modules(path)):
            top = target.split(".")[0]
            if top == package or top in ALLOWED[package]:
                continue
            if package in FLOW and top in FLOW and target in FLOW_SHARED:
                continue
            wrong.append(f"{module} imports {target}")
    return wrong


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_beneath_it(package: str) -> None:
    assert (PROJECT_ROOT / package / "__init__.py").is_file(), f"{package}/ is a package"
    assert not violations(package)


def test_every_python_package_of_the_repository_has_a_layer() -> None:
    tops = {path.parent.name for path in PROJECT_ROOT.glob("*/__init__.py")}
    assert tops - {"tests"} == set(ALLOWED)


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    (tmp_path / "producers").mkdir()
    (tmp_path / "producers" / "intake.py").write_text(
        "from streams.normalize import normalize_submission\nfrom streams.app import create_app\n"
        "def f():\n    from devkit.local_run import Services\n", encoding="utf-8")
    assert violations("producers", tmp_path) == [
        "producers.intake imports devkit.local_run", "producers.intake imports streams.app"]


def test_the_runtime_makes_its_kafka_clients_in_one_place() -> None:
    """signalements/kafka_clients.py says once what every connection needs (the access control's settings, next)."""
    made_elsewhere = []
    for package in ("schemas", "signalements", "producers", "streams", "consumers", "ops", "cli"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if path.name == "kafka_clients.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                        "KafkaProducer", "KafkaConsumer", "KafkaAdminClient"):
                    made_elsewhere.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.func.id}")
    assert made_elsewhere == []
