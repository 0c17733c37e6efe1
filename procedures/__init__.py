"""One module per runbook area; `build_catalog` gathers their commands."""

from __future__ import annotations

from bot.engine.builtins import BUILTINS
from bot.engine.catalog import Catalog
from procedures import database, deployments, health, rollout


def build_catalog() -> Catalog:
    catalog = Catalog()
    for command in (*health.COMMANDS, *database.COMMANDS, *deployments.COMMANDS, *rollout.COMMANDS, *BUILTINS):
        catalog.add(command)
    return catalog
