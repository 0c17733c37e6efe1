"""The local sandbox: the Slack simulator, fakes of every target, and the real bot between them.

The console (`meridian-bot shell`) and the tests start it; no production module imports it.
Everything listens on 127.0.0.1 on ports the OS picks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.config import Settings
from bot.engine.runner import EngineTiming
from bot.modes import start_http, start_socket
from bot.runtime import Runtime
from bot.sandbox.fakes.ethereum_rpc import FakeEthereumRpc
from bot.sandbox.fakes.frontend import FakeFrontend
from bot.sandbox.fakes.kubernetes import FakeKubernetes
from bot.sandbox.fakes.meridian_api import FakeMeridianApi
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from bot.sandbox.meridian_schema import ApiSessions
from bot.sandbox.slack.driver import Delivery, SlackDriver
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text, mrkdwn_to_text
from bot.sandbox.slack.web_api import FakeSlack

logger = logging.getLogger(__name__)

SIGNING_SECRET = "sandbox-signing-secret"
METRICS_TOKEN = "sandbox-metrics-token"
PAGERDUTY_ROUTING_KEY = "sandbox-routing-key"
OPS_CHANNEL = "C0OPS"
INCIDENT_CHANNEL = "C0INCIDENT"


@dataclass(frozen=True)
class SandboxUsers:
    """The people of the sandbox workspace: it starts with the operator acting."""

    operator: str = "U0OPERATOR"
    approver: str = "U0APPROVER1"
    second_approver: str = "U0APPROVER2"
    admin: str = "U0ADMIN"
    viewer: str = "U0VIEWER"

    @property
    def names(self) -> dict[str, str]:
        return {
            "operator": self.operator,
            "approver": self.approver,
            "approver2": self.second_approver,
            "admin": self.admin,
            "viewer": self.viewer,
        }


@dataclass(frozen=True)
class CommandOutcome:
    delivery: Delivery
    cards: list[Message]
    new_messages: list[Message]

    @property
    def card(self) -> Message:
        if len(self.cards) != 1:
            raise AssertionError(f"expected one run card, found {len(self.cards)}")
        return self.cards[0]

    @property
    def card_text(self) -> str:
        return message_text(self.card)

    @property
    def reply_text(self) -> str:
        """The ephemeral text the bot put in its ack (usage errors, help), as a reader sees it."""
        body = self.delivery.json() if self.delivery.body else None
        if self.delivery.ack is not None and self.delivery.ack.payload:
            body = self.delivery.ack.payload
        return mrkdwn_to_text(body.get("text", "")) if isinstance(body, dict) else ""


@dataclass
class Sandbox:
    """Start with `await sandbox.start()`, stop with `await sandbox.stop()`."""

    database_url: str | None = None
    state_url: str = "sqlite:///:memory:"
    via: Literal["http", "socket"] = "http"
    target_timeout: float = 5.0
    use_fake_targets: bool = True
    timing: EngineTiming = field(default_factory=EngineTiming)
    clock: Callable[[], float] = time.time
    replica_id: str | None = None
    on_bot_start: list[Callable[[Runtime], None]] = field(default_factory=list)
    card_interval: float = 1.0
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    users: SandboxUsers = field(default_factory=SandboxUsers)

    slack: FakeSlack = field(init=False)
    api: FakeMeridianApi = field(init=False)
    frontend: FakeFrontend = field(init=False)
    rpc: FakeEthereumRpc = field(init=False)
    backup_rpc: FakeEthereumRpc = field(init=False)
    kubernetes: FakeKubernetes = field(init=False)
    pagerduty: FakePagerDuty = field(init=False)
    runtime: Runtime = field(init=False)
    driver: SlackDriver = field(init=False)
    settings: Settings = field(init=False)
    # Database sessions that scenarios open in the name of the Meridian API; closed on stop.
    api_sessions: ApiSessions | None = field(default=None, init=False)

    async def start(self) -> None:
        self.slack = FakeSlack()
        self.api = FakeMeridianApi(metrics_token=METRICS_TOKEN)
        self.frontend = FakeFrontend()
        self.rpc = FakeEthereumRpc()
        self.backup_rpc = FakeEthereumRpc(start_block=19_000_000)
        self.kubernetes = FakeKubernetes()
        self.pagerduty = FakePagerDuty()
        self._started: list[Any] = []
        servers = [self.slack]
        if self.use_fake_targets:
            servers += [self.api, self.frontend, self.rpc, self.backup_rpc, self.kubernetes, self.pagerduty]
        for server in servers:
            await server.start()
            self._started.append(server)

        for role, user_id in self.users.names.items():
            self.slack.add_user(user_id, role, real_name=role.capitalize())

        values: dict[str, Any] = {
            "slack_bot_token": self.slack.bot_token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_app_token": self.slack.app_token,
            "slack_api_url": self.slack.base_url,
            "database_url": self.database_url,
            "bot_state_url": self.state_url,
            "incident_channel": INCIDENT_CHANNEL,
            "viewers": [self.users.viewer],
            "operators": [self.users.operator],
            "approvers": [self.users.approver, self.users.second_approver],
            "admins": [self.users.admin],
            "pagerduty_events_url": self.slack.base_url.replace("/api/", "/pagerduty-not-running"),
        }
        if self.use_fake_targets:
            values.update(
                pagerduty_events_url=self.pagerduty.events_url,
                pagerduty_routing_key=PAGERDUTY_ROUTING_KEY,
                meridian_api_url=self.api.base_url,
                meridian_frontend_url=self.frontend.base_url,
                metrics_token=METRICS_TOKEN,
                ethereum_rpc_url=self.rpc.base_url,
                ethereum_backup_rpc_url=self.backup_rpc.base_url,
                kubeconfig=self.kubernetes.kubeconfig_path,
            )
        values.update(self.settings_overrides)
        # Explicit values win over the environment, so a developer's .env cannot leak in.
        self.settings = Settings(_env_file=None, **values)

        await self._start_bot()
        logger.info("Sandbox started (%s mode)", self.via)

    async def _start_bot(self) -> None:
        self.runtime = await Runtime.create(
            self.settings,
            target_timeout=self.target_timeout,
            timing=self.timing,
            clock=self.clock,
            replica_id=self.replica_id,
            card_interval=self.card_interval,
        )
        for hook in self.on_bot_start:
            hook(self.runtime)
        if self.via == "socket":
            self._socket_handler = await start_socket(self.runtime)
            await self.slack.wait_for_socket_client()
            self.driver = SlackDriver(self.slack, signing_secret=SIGNING_SECRET)
        else:
            self._http_runner, port = await start_http(self.runtime, host="127.0.0.1", port=0)
            self.driver = SlackDriver(
                self.slack,
                signing_secret=SIGNING_SECRET,
                events_url=f"http://127.0.0.1:{port}/slack/events",
            )

    async def restart_bot(self, *, crash: bool = False) -> None:
        """Stop the bot and start it again on the same store, Slack simulator and fakes.

        With `crash`, executing runs are abandoned where they are (as a killed process leaves
        them), and the new bot is another replica.
        """
        await self._stop_bot(crash=crash)
        if crash:
            self.replica_id = None
        await self._start_bot()

    async def _stop_bot(self, *, crash: bool = False) -> None:
        if hasattr(self, "_socket_handler"):
            await self._socket_handler.close_async()
            del self._socket_handler
        if hasattr(self, "_http_runner"):
            await self._http_runner.cleanup()
            del self._http_runner
        if hasattr(self, "runtime"):
            if crash:
                await self.runtime.upkeep.stop(release_leadership=False)
            await self.runtime.close()
            del self.runtime

    async def command(
        self,
        text: str,
        *,
        user: str | None = None,
        channel: str = OPS_CHANNEL,
        via: Literal["http", "socket"] | None = None,
    ) -> CommandOutcome:
        """Send `/meridian text` and wait until the bot has finished handling it and its run."""
        before = {message.ts for message in self.slack.messages_in(channel)}
        delivery = await self.driver.command(text, user_id=user or self.users.operator, channel_id=channel, via=via)
        await self.runtime.engine.wait_idle()
        new = [message for message in self.slack.messages_in(channel) if message.ts not in before]
        cards = [message for message in new if message.thread_ts is None and not message.is_ephemeral]
        return CommandOutcome(delivery=delivery, cards=cards, new_messages=new)

    async def stop(self) -> None:
        if hasattr(self, "slack"):
            self.slack.release()
        if self.api_sessions is not None:
            await self.api_sessions.close()
        await self._stop_bot()
        for server in reversed(self._started):
            await server.stop()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
