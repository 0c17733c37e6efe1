"""One module per runbook area; `build_catalog` gathers their commands."""

from __future__ import annotations

from bot.engine.builtins import BUILTINS
from bot.engine.catalog import Catalog
from procedures import (
    backups,
    circuit,
    database,
    deployments,
    emergency,
    emergency_contract,
    emergency_db,
    health,
    investigate,
    metrics,
    people,
    ratelimit,
    rds,
    restore,
    rollout,
    rotate,
    rotate_db,
    rpc,
)


def build_catalog() -> Catalog:
    catalog = Catalog()
    for command in (*health.COMMANDS, *database.COMMANDS, *deployments.COMMANDS, *rollout.COMMANDS, *backups.COMMANDS, *restore.COMMANDS, *rds.COMMANDS, *rotate.COMMANDS, *rotate_db.COMMANDS, *emergency.COMMANDS, *emergency_contract.COMMANDS, *emergency_db.COMMANDS, *people.COMMANDS, *BUILTINS):
        catalog.add(command)
    for command in (*metrics.COMMANDS, *investigate.COMMANDS, *rpc.COMMANDS, *circuit.COMMANDS, *ratelimit.COMMANDS):
        catalog.add(command)
    return catalog
