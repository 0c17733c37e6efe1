"""Slack-facing listeners only: parse, authorize, ack, hand over to the engine."""

from __future__ import annotations

from slack_bolt.app.async_app import AsyncApp

from bot.engine.catalog import Catalog
from bot.engine.runner import Engine
from bot.observability.metrics import BotMetrics
from handlers import actions, commands, errors, resolutions


def register(app: AsyncApp, *, engine: Engine, catalog: Catalog, metrics: BotMetrics) -> None:
    commands.register(app, engine=engine, catalog=catalog, metrics=metrics)
    actions.register(app, engine=engine)
    resolutions.register(app, engine=engine, catalog=catalog)
    errors.register(app)
