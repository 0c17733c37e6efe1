"""`FakeSlack`: the Slack Web API, response_url hooks, file uploads and Socket Mode on one loopback server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

from bot.sandbox.slack.chat_api import CHAT_METHODS
from bot.sandbox.slack.directory import Channel, User
from bot.sandbox.slack.directory_api import DIRECTORY_METHODS
from bot.sandbox.slack.failures import FailurePlan, InjectedFailure
from bot.sandbox.slack.files_api import Uploads
from bot.sandbox.slack.records import Ack, Block, Call, Message, UploadedFile
from bot.sandbox.slack.replies import ApiError, Params
from bot.sandbox.slack.response_url import ResponseUrls
from bot.sandbox.slack.socket_mode import EnvelopeType, SocketModeServer
from bot.sandbox.slack.workspace import StoreEvent, Workspace

logger = logging.getLogger(__name__)

Handler = Callable[[Workspace, Params], dict[str, Any]]
Observer = Callable[[StoreEvent, Message | UploadedFile], None]
Predicate = Callable[["FakeSlack"], object]

HOST = "127.0.0.1"
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
MAX_REQUEST_BYTES = 64 * 1024 * 1024


class FakeSlack:
    """A fake Slack workspace served over HTTP on 127.0.0.1, for tests and the local console.

    Point `AsyncWebClient(base_url=fake.base_url)` at it. Every request is recorded in `calls`,
    messages and files are kept for inspection, and failures can be queued per method.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-sandbox",
        app_token: str = "xapp-sandbox",
        team_id: str = "T0SANDBOX",
        team_domain: str = "sandbox",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0SANDBOX",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.app_id = app_id
        self.calls: list[Call] = []
        self._port = port
        self._runner: web.AppRunner | None = None
        self._observers: list[Observer] = []
        self._changed = asyncio.Event()
        self._failures = FailurePlan()
        self._gate = asyncio.Event()
        self._gate.set()
        self.held: list[str] = []

        self.workspace = Workspace(
            team_id=team_id,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            clock=clock,
            publish=self._publish,
        )
        self.uploads = Uploads()
        self.response_urls = ResponseUrls(self.workspace)
        self.socket_mode = SocketModeServer(app_id=app_id, notify=self._notify_change)
        self.routes: dict[str, Handler] = {
            **CHAT_METHODS,
            **DIRECTORY_METHODS,
            "files.getUploadURLExternal": self.uploads.get_upload_url,
            "files.completeUploadExternal": self.uploads.complete,
            "apps.connections.open": self.socket_mode.open_connection,
        }
        """Web API method name to handler; a test may add or replace entries."""

        self.add_user(bot_user_id, "meridian", real_name="Meridian", is_bot=True)
        self.add_channel("C0OPS", "ops")
        self.add_channel("C0INCIDENT", "incidents")

    # Server lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeSlack is already running.")
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._gate_middleware])
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/hooks/{hook_id}", self._handle_hook)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/socket-mode/{ticket}", self.socket_mode.handle_websocket)
        app.router.add_get("/archives/{channel}/{link_ts}", self._handle_permalink)

        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, self._port).start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.workspace.root_url = f"http://{HOST}:{port}"
        logger.info("Fake Slack listening on %s", self.workspace.root_url)

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.socket_mode.close()
        await self._runner.cleanup()
        self._runner = None
        logger.info("Fake Slack on %s stopped", self.workspace.root_url)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def hold(self) -> None:
        """Hold every HTTP request (Web API, response_url, uploads) unanswered until `release()`.

        Each held request is listed in `held` when it arrives; Socket Mode keeps flowing.
        """
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @web.middleware
    async def _gate_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._gate.is_set() and not request.path.startswith("/socket-mode/"):
            self.held.append(request.path)
            self._notify_change()
            await self._gate.wait()
        return await handler(request)

    @property
    def base_url(self) -> str:
        """Web API root with the trailing slash that `AsyncWebClient(base_url=...)` expects."""
        if not self.workspace.root_url:
            raise RuntimeError("FakeSlack has no URL before start().")
        return f"{self.workspace.root_url}/api/"

    # Directory

    def add_user(self, user_id: str, name: str, *, real_name: str | None = None, is_bot: bool = False) -> User:
        user = User(id=user_id, name=name, real_name=real_name or name, is_bot=is_bot)
        self.workspace.directory.add_user(user)
        return user

    def add_usergroup(self, group_id: str, members: list[str] | tuple[str, ...]) -> None:
        self.workspace.directory.add_usergroup(group_id, members)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_member: bool = True,
        is_private: bool = False,
        is_im: bool = False,
    ) -> Channel:
        channel = Channel(id=channel_id, name=name, is_member=is_member, is_private=is_private, is_im=is_im)
        self.workspace.directory.add_channel(channel)
        return channel

    # Messages, files and calls

    @property
    def messages(self) -> list[Message]:
        return self.workspace.messages.all()

    @property
    def files(self) -> list[UploadedFile]:
        return list(self.workspace.files)

    def message(self, channel: str, ts: str) -> Message:
        """Return the stored message, deleted ones included; raise LookupError when there is none."""
        message = self.workspace.messages.get(channel, ts)
        if message is None:
            known = ", ".join(m.ts for m in self.messages_in(channel)) or "none"
            raise LookupError(f"No message {ts} in channel {channel}; stored timestamps: {known}.")
        return message

    def messages_in(self, channel: str) -> list[Message]:
        """Return the channel's messages in post order, deleted ones included (see `Message.deleted`)."""
        return self.workspace.messages.in_channel(channel)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Return the thread's parent message and its replies, oldest first."""
        return self.workspace.messages.thread(channel, ts)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def post_user_message(
        self,
        channel: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[Block] | None = None,
    ) -> Message:
        """Store a message written by a person, for example to see chat.update reject it."""
        return self.workspace.messages.post(
            channel=channel,
            text=text,
            blocks=blocks or [],
            user=user_id,
            source="user",
            thread_ts=thread_ts,
        )

    def new_response_url(self, channel_id: str, user_id: str, *, message_ts: str | None = None) -> str:
        """Issue a response_url as Slack sends with a command or, given `message_ts`, an interaction."""
        return self.response_urls.new(channel_id, user_id, message_ts=message_ts)

    # Observers and waiting

    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call `callback(event, record)` on every stored change; return a function that unsubscribes."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback)

    async def wait_for(
        self,
        predicate: Predicate,
        timeout: float = 5.0,
        *,
        description: str | None = None,
    ) -> Any:
        """Wait until `predicate(fake)` is truthy and return its value.

        The predicate is checked again after every call and every stored change. Raises TimeoutError
        after `timeout` seconds, naming the predicate and the last calls.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate(self)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._describe_timeout(predicate, timeout, description))
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
        return result

    # Failure injection

    def fail(self, method: str, error: str = "internal_error", *, times: int = 1) -> None:
        """Respond to the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        self._failures.add(method, InjectedFailure(kind="error", error=error), times=times)

    def rate_limit(self, method: str, retry_after: int = 1, *, times: int = 1) -> None:
        """Respond to the next `times` calls of `method` with HTTP 429 and `Retry-After: retry_after` seconds."""
        failure = InjectedFailure(kind="rate_limit", error="ratelimited", status=429, retry_after=retry_after)
        self._failures.add(method, failure, times=times)

    def http_error(self, method: str, status: int = 500, *, times: int = 1) -> None:
        """Respond to the next `times` calls of `method` with an HTML error page and HTTP `status`."""
        self._failures.add(method, InjectedFailure(kind="http_error", status=status), times=times)

    # Socket Mode

    async def wait_for_socket_client(self, timeout: float = 5.0) -> None:
        await self.wait_for(
            lambda fake: fake.socket_mode.connected,
            timeout,
            description="a Socket Mode client to connect",
        )

    async def send_envelope(
        self,
        envelope_type: EnvelopeType,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        ack_timeout: float = 3.0,
    ) -> Ack | None:
        """Send an envelope to the connected app; return its ack, or None when none came in time."""
        return await self.socket_mode.send_envelope(
            envelope_type,
            payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            envelope_id=envelope_id,
            accepts_response_payload=accepts_response_payload,
            ack_timeout=ack_timeout,
        )

    async def disconnect_socket_clients(self, reason: str = "refresh_requested") -> None:
        await self.socket_mode.disconnect_clients(reason)

    # HTTP handlers

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ApiError as error:
            return self._respond(method, {}, error.to_body())
        token = _bearer_token(request) or params.pop("token", None)

        if method not in self.routes:
            return self._respond(method, params, {"ok": False, "error": "unknown_method"})
        auth_error = self._auth_error(method, token)
        if auth_error is not None:
            return self._respond(method, params, {"ok": False, "error": auth_error})
        failure = self._failures.take(method)
        if failure is not None:
            return self._respond_with_failure(method, params, failure)

        try:
            body = {"ok": True, **self.routes[method](self.workspace, params)}
        except ApiError as error:
            body = error.to_body()
        return self._respond(method, params, body)

    async def _handle_hook(self, request: web.Request) -> web.StreamResponse:
        hook_id = request.match_info["hook_id"]
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        params = {"hook_id": hook_id, **body} if isinstance(body, dict) else {"hook_id": hook_id}
        if not isinstance(body, dict):
            return self._respond("response_url", params, {"ok": False, "error": "invalid_payload"}, status=400)

        failure = self._failures.take("response_url")
        if failure is not None:
            return self._respond_with_failure("response_url", params, failure)
        try:
            self.response_urls.post(hook_id, body)
        except ApiError as error:
            return self._respond("response_url", params, error.to_body(), status=error.status)
        return self._respond("response_url", params, {"ok": True})

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        content = await _read_upload(request)
        params = {"file_id": file_id, "size": len(content)}
        if not self.uploads.receive(file_id, content):
            self._record("file_upload", params, ok=False, error="file_not_found", status=404)
            return web.Response(status=404, text=f"Upload URL for file {file_id} is unknown.\n")
        self._record("file_upload", params, ok=True, error=None, status=200)
        return web.Response(text=f"OK - {len(content)}")

    async def _handle_permalink(self, request: web.Request) -> web.StreamResponse:
        channel = request.match_info["channel"]
        digits = request.match_info["link_ts"].removeprefix("p")
        message = self.workspace.live_message(channel, f"{digits[:-6]}.{digits[-6:]}")
        if message is None:
            return web.json_response({"ok": False, "error": "message_not_found"}, status=404)
        return web.json_response({"ok": True, "channel": channel, "message": message.to_api()})

    # Helpers

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        expected = self.app_token if method in APP_TOKEN_METHODS else self.bot_token
        if token == expected:
            return None
        if token in (self.app_token, self.bot_token):
            return "not_allowed_token_type"
        return "invalid_auth"

    def _respond(self, method: str, params: Params, body: dict[str, Any], *, status: int = 200) -> web.Response:
        self._record(method, params, ok=bool(body.get("ok")), error=body.get("error"), status=status)
        return web.json_response(body, status=status)

    def _respond_with_failure(self, method: str, params: Params, failure: InjectedFailure) -> web.Response:
        logger.info("Injected %s failure for %s (status %d)", failure.kind, method, failure.status)
        if failure.kind == "http_error":
            self._record(method, params, ok=False, error=f"http_{failure.status}", status=failure.status)
            page = f"<html><body><h1>{failure.status}</h1><p>Injected HTTP error.</p></body></html>"
            return web.Response(status=failure.status, text=page, content_type="text/html")

        response = self._respond(method, params, {"ok": False, "error": failure.error}, status=failure.status)
        if failure.retry_after is not None:
            response.headers["Retry-After"] = str(failure.retry_after)
        return response

    def _record(self, method: str, params: Params, *, ok: bool, error: str | None, status: int) -> None:
        call = Call(method=method, params=params, at=time.monotonic(), ok=ok, error=error, status=status)
        self.calls.append(call)
        if ok:
            logger.debug("Fake Slack responded to %s: ok, status %d", method, status)
        else:
            logger.info("Fake Slack responded to %s with error %s, status %d", method, error, status)
        self._notify_change()

    def _publish(self, event: StoreEvent, record: Message | UploadedFile) -> None:
        for observer in list(self._observers):
            try:
                observer(event, record)
            except Exception:
                logger.exception("Observer %r failed on a %s event", observer, event)
        self._notify_change()

    def _notify_change(self) -> None:
        # Each waiter awaits the event that was current when it checked, so set() wakes it and the
        # replacement event is clear for the next round of waits.
        self._changed.set()
        self._changed = asyncio.Event()

    def _describe_timeout(self, predicate: Predicate, timeout: float, description: str | None) -> str:
        if description is None:
            code = getattr(predicate, "__code__", None)
            where = f" at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}" if code else ""
            description = f"{getattr(predicate, '__qualname__', repr(predicate))}{where}"
        recent = ", ".join(
            f"{call.method} {'ok' if call.ok else f'error={call.error}'}" for call in self.calls[-5:]
        )
        return (
            f"Timed out after {timeout:.1f} s waiting for {description}; "
            f"{len(self.calls)} calls so far, the last: {recent or 'none'}."
        )


async def _read_params(request: web.Request) -> Params:
    """Merge the query string with a JSON or form body, the two encodings slack_sdk sends."""
    params: Params = dict(request.query)
    if not request.can_read_body:
        return params

    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _bearer_token(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


async def _read_upload(request: web.Request) -> bytes:
    """Read an upload as raw bytes (what slack_sdk sends) or from a multipart `file` field."""
    if request.content_type != "multipart/form-data":
        return await request.read()
    form = await request.post()
    field = form.get("file")
    if isinstance(field, web.FileField):
        return field.file.read()
    return str(field or "").encode("utf-8")
