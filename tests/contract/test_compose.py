"""docker-compose.yml as a deployer meets it: Compose v2 syntax, every published port on
127.0.0.1 (the stack runs with NICEPAY's public sandbox key), the simulator published for the
README's tour. (scripts/container-check.sh runs the image itself; no Compose here.)"""

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_ports_are_published_on_loopback_only() -> None:
    published = {name: service.get("ports", []) for name, service in compose()["services"].items()}
    assert {name for name, ports in published.items() if ports} == {"db", "simulator", "app"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_tours_ports_are_the_readmes() -> None:
    services = compose()["services"]
    assert services["app"]["ports"] == ["127.0.0.1:${APP_PORT:-8000}:8000"]
    assert services["simulator"]["ports"] == ["127.0.0.1:${SIM_PORT:-8900}:8900"]
    readme = (COMPOSE.parent / "README.md").read_text()
    assert "Compose v2" in readme and "localhost:8900/sim/transactions" in readme
