"""The Slack simulator, driven by the real slack_sdk clients over loopback HTTP and WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.sandbox.slack import FakeSlack, SlackDriver, sign
from bot.sandbox.slack.limits import MAX_TOTAL_BLOCK_TEXT

SIGNING_SECRET = "sandbox-signing-secret"
OPS = "C0OPS"
ALICE = "U0ALICE"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user(ALICE, "alice", real_name="Alice Example")
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)


class RecordingApp:
    """A stand-in for the bot's HTTP endpoint: it stores each request and responds with 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/slack/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/slack/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.json_response({"text": "received"})


@pytest.fixture
async def app() -> AsyncIterator[RecordingApp]:
    app = RecordingApp()
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
def driver(fake: FakeSlack, app: RecordingApp) -> SlackDriver:
    return SlackDriver(fake, signing_secret=SIGNING_SECRET, events_url=app.url, clock=lambda: 1_733_312_345.0)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str = "Go", *, action_id: str = "go", value: str = "v") -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, "value": value}


async def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value


# Web API: messages


async def test_post_update_round_trip(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="deploying", blocks=[section("deploying")])
    reply = await client.chat_postMessage(channel=OPS, text="step 1", thread_ts=posted["ts"])
    await client.chat_update(channel=OPS, ts=posted["ts"], text="deployed", blocks=[section("deployed")])

    message = fake.message(OPS, posted["ts"])
    assert message.text == "deployed"
    assert message.blocks == (section("deployed"),)
    assert message.source == "chat.postMessage"
    assert [version.text for version in message.versions] == ["deploying"]
    assert message.versions[0].replaced_by == "chat.update"
    assert [m.ts for m in fake.thread(OPS, posted["ts"])] == [posted["ts"], reply["ts"]]
    assert fake.message(OPS, reply["ts"]).thread_ts == posted["ts"]


async def test_timestamps_unique_and_increasing(fake: FakeSlack, client: AsyncWebClient) -> None:
    stamps = [(await client.chat_postMessage(channel=OPS, text=str(i)))["ts"] for i in range(5)]

    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)


async def test_update_keeps_blocks_when_omitted(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="a", blocks=[section("a")])
    await client.chat_update(channel=OPS, ts=posted["ts"], text="b")

    assert fake.message(OPS, posted["ts"]).blocks == (section("a"),)


async def test_ephemeral_visible_to_one_user(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.chat_postEphemeral(channel=OPS, user=ALICE, text="only you")

    message = fake.message(OPS, response["message_ts"])
    assert message.visible_to == ALICE
    assert message.source == "chat.postEphemeral"
    error = await slack_error(client.chat_update(channel=OPS, ts=message.ts, text="changed"))
    assert error.response["error"] == "message_not_found"


async def test_ephemeral_unknown_user(client: AsyncWebClient) -> None:
    error = await slack_error(client.chat_postEphemeral(channel=OPS, user="U0NOBODY", text="x"))

    assert error.response["error"] == "user_not_found"


async def test_post_to_user_opens_direct_message(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.chat_postMessage(channel=ALICE, text="approve?")

    assert response["channel"].startswith("D")
    assert fake.messages_in(response["channel"])[0].text == "approve?"


@pytest.mark.parametrize(
    ("setup", "channel", "error"),
    [
        (None, "C0MISSING", "channel_not_found"),
        (("C0SECRET", "secret", False, True), "C0SECRET", "not_in_channel"),
    ],
    ids=["unknown", "private_not_member"],
)
async def test_post_channel_errors(
    fake: FakeSlack,
    client: AsyncWebClient,
    setup: tuple[str, str, bool, bool] | None,
    channel: str,
    error: str,
) -> None:
    if setup is not None:
        channel_id, name, is_member, is_private = setup
        fake.add_channel(channel_id, name, is_member=is_member, is_private=is_private)

    raised = await slack_error(client.chat_postMessage(channel=channel, text="x"))

    assert raised.response["error"] == error


async def test_public_channel_accepts_non_member(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel("C0PUBLIC", "general", is_member=False)

    response = await client.chat_postMessage(channel="#general", text="hello")

    assert response["channel"] == "C0PUBLIC"


async def test_update_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="mine")
    human = fake.post_user_message(OPS, ALICE, "theirs")

    missing = await slack_error(client.chat_update(channel=OPS, ts="1.000001", text="x"))
    not_ours = await slack_error(client.chat_update(channel=OPS, ts=human.ts, text="x"))
    too_long = await slack_error(client.chat_update(channel=OPS, ts=posted["ts"], text="x" * 40_001))

    assert missing.response["error"] == "message_not_found"
    assert not_ours.response["error"] == "cant_update_message"
    assert too_long.response["error"] == "msg_too_long"


async def test_post_truncates_long_text(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="x" * 40_010)

    assert len(fake.message(OPS, posted["ts"]).text) == 40_000


async def test_permalink_points_at_fake(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="x")

    response = await client.chat_getPermalink(channel=OPS, message_ts=posted["ts"])

    assert response["permalink"].startswith(fake.base_url.removesuffix("api/"))
    assert response["permalink"].endswith(posted["ts"].replace(".", ""))


# Web API: directory and auth


async def test_directory_lookups(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_usergroup("S0ONCALL", [ALICE])

    user = await client.users_info(user=ALICE)
    group = await client.usergroups_users_list(usergroup="S0ONCALL")
    channel = await client.conversations_info(channel=OPS)
    auth = await client.auth_test()

    assert user["user"]["real_name"] == "Alice Example"
    assert group["users"] == [ALICE]
    assert channel["channel"]["name"] == "ops"
    assert auth["user_id"] == "U0BOT"
    assert auth["team_id"] == "T0SANDBOX"


@pytest.mark.parametrize(
    ("method", "kwargs", "error"),
    [
        ("users_info", {"user": "U0NOBODY"}, "user_not_found"),
        ("usergroups_users_list", {"usergroup": "S0NONE"}, "no_such_subteam"),
        ("conversations_info", {"channel": "C0NONE"}, "channel_not_found"),
    ],
)
async def test_directory_errors(
    client: AsyncWebClient,
    method: str,
    kwargs: dict[str, str],
    error: str,
) -> None:
    raised = await slack_error(getattr(client, method)(**kwargs))

    assert raised.response["error"] == error


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, "not_authed"), ("xoxb-wrong", "invalid_auth"), ("xapp-sandbox", "not_allowed_token_type")],
)
async def test_auth_errors(fake: FakeSlack, token: str | None, error: str) -> None:
    client = AsyncWebClient(token=token, base_url=fake.base_url)

    raised = await slack_error(client.chat_postMessage(channel=OPS, text="x"))

    assert raised.response["error"] == error
    assert raised.response.status_code == 200
    assert fake.messages_in(OPS) == []


async def test_unknown_method(client: AsyncWebClient) -> None:
    raised = await slack_error(client.api_call("chat.teleport"))

    assert raised.response["error"] == "unknown_method"


async def test_form_encoded_request(fake: FakeSlack) -> None:
    client = AsyncWebClient(base_url=fake.base_url)

    response = await client.api_call(
        "chat.postMessage",
        data={"token": fake.bot_token, "channel": OPS, "text": "form", "blocks": json.dumps([section("form")])},
    )

    assert fake.message(OPS, response["ts"]).blocks == (section("form"),)


# Block Kit limits

BLOCK_LIMIT_CASES = [
    pytest.param([section("x")] * 51, "/blocks", id="too_many_blocks"),
    pytest.param([section("x" * 3001)], "/blocks/0/text/text", id="section_text"),
    pytest.param(
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        "/blocks/0/fields",
        id="too_many_fields",
    ),
    pytest.param(
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
        "/blocks/0/fields/0/text",
        id="field_text",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button("b" * 76)]}],
        "/blocks/0/elements/0/text/text",
        id="button_text",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(value="v" * 2001)]}], "/blocks/0/elements/0/value", id="button_value"
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(action_id="a" * 256)]}],
        "/blocks/0/elements/0/action_id",
        id="action_id",
    ),
    pytest.param(
        [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}],
        "/blocks/0/elements",
        id="too_many_actions",
    ),
    pytest.param(
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
        "/blocks/0/elements",
        id="too_many_context_elements",
    ),
    pytest.param(
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text", id="header_text"
    ),
    pytest.param(
        [{"type": "section", "text": {"type": "mrkdwn", "text": "s"}, "accessory": button("b" * 76)}],
        "/blocks/0/accessory/text/text",
        id="accessory_button_text",
    ),
]


@pytest.mark.parametrize(("blocks", "pointer"), BLOCK_LIMIT_CASES)
async def test_block_limit_rejected(
    fake: FakeSlack,
    client: AsyncWebClient,
    blocks: list[dict[str, Any]],
    pointer: str,
) -> None:
    raised = await slack_error(client.chat_postMessage(channel=OPS, text="x", blocks=blocks))

    assert raised.response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in line for line in raised.response["errors"])
    assert raised.response["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert fake.messages_in(OPS) == []


async def test_blocks_at_limits_accepted(client: AsyncWebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3000}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 200}] * 10},
        {"type": "actions", "elements": [button("b" * 75, action_id=f"{i:0>255}", value="v") for i in range(25)]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
    ]

    response = await client.chat_postMessage(channel=OPS, text="x", blocks=blocks)

    assert response["ok"] is True


async def test_total_block_text_too_long(client: AsyncWebClient) -> None:
    per_block = 3000
    blocks = [section("s" * per_block)] * (MAX_TOTAL_BLOCK_TEXT // per_block + 1)

    raised = await slack_error(client.chat_postMessage(channel=OPS, text="x", blocks=blocks))

    assert raised.response["error"] == "msg_blocks_too_long"


async def test_block_limits_on_update_and_ephemeral(fake: FakeSlack, client: AsyncWebClient) -> None:
    too_long = [section("x" * 3001)]
    posted = await client.chat_postMessage(channel=OPS, text="ok")

    update = await slack_error(client.chat_update(channel=OPS, ts=posted["ts"], text="x", blocks=too_long))
    ephemeral = await slack_error(client.chat_postEphemeral(channel=OPS, user=ALICE, text="x", blocks=too_long))

    assert update.response["error"] == "invalid_blocks"
    assert ephemeral.response["error"] == "invalid_blocks"
    assert fake.message(OPS, posted["ts"]).versions == ()


# Failure injection


async def test_rate_limit_seen_by_client(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.rate_limit("chat.postMessage", retry_after=7)

    raised = await slack_error(client.chat_postMessage(channel=OPS, text="x"))
    retried = await client.chat_postMessage(channel=OPS, text="x")

    assert raised.response.status_code == 429
    assert raised.response.headers["Retry-After"] == "7"
    assert raised.response["error"] == "ratelimited"
    assert retried["ok"] is True
    assert [call.status for call in fake.calls_to("chat.postMessage")] == [429, 200]


async def test_injected_error_used_up(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail("users.info", "fatal_error", times=2)

    first = await slack_error(client.users_info(user=ALICE))
    second = await slack_error(client.users_info(user=ALICE))
    third = await client.users_info(user=ALICE)

    assert first.response["error"] == "fatal_error"
    assert second.response["error"] == "fatal_error"
    assert third["ok"] is True


async def test_injected_http_error(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.http_error("chat.update", status=503)

    raised = await slack_error(client.chat_update(channel=OPS, ts="1.000001", text="x"))

    assert raised.response.status_code == 503
    assert fake.calls_to("chat.update")[0].error == "http_503"


# Files


async def test_files_upload_v2_end_to_end(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="long output follows")

    response = await client.files_upload_v2(
        channel=OPS,
        content="line 1\nline 2\n",
        filename="output.txt",
        title="Rollout log",
        thread_ts=posted["ts"],
        initial_comment="full log",
    )

    assert response["file"]["title"] == "Rollout log"
    [stored] = fake.files
    assert stored.text == "line 1\nline 2\n"
    assert stored.title == "Rollout log"
    assert stored.channel == OPS
    assert stored.thread_ts == posted["ts"]
    assert stored.initial_comment == "full log"
    assert [call.method for call in fake.calls[-3:]] == [
        "files.getUploadURLExternal",
        "file_upload",
        "files.completeUploadExternal",
    ]


async def test_complete_upload_unknown_file(client: AsyncWebClient) -> None:
    unknown_file = [{"id": "F0NONE", "title": "x"}]

    raised = await slack_error(client.files_completeUploadExternal(files=unknown_file, channel_id=OPS))

    assert raised.response["error"] == "file_not_found"


# response_url


async def test_response_url_capped_at_five(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.new_response_url(OPS, ALICE))

    statuses = [(await webhook.send(text=f"reply {i}")).status_code for i in range(6)]
    rejected = fake.calls_to("response_url")[-1]

    assert statuses == [200] * 5 + [404]
    assert rejected.error == "used_url"
    assert len(fake.messages_in(OPS)) == 5


async def test_response_url_ephemeral_by_default(fake: FakeSlack) -> None:
    url = fake.new_response_url(OPS, ALICE)
    webhook = AsyncWebhookClient(url)

    await webhook.send(text="just you")
    await webhook.send(text="everyone", response_type="in_channel")

    private, public = fake.messages_in(OPS)
    assert private.visible_to == ALICE
    assert public.visible_to is None
    assert private.source == "response_url"
    assert private.response_url_id == url.rsplit("/", 1)[-1]


async def test_response_url_replace_and_delete(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=OPS, text="approve?", blocks=[section("approve?")])
    webhook = AsyncWebhookClient(fake.new_response_url(OPS, ALICE, message_ts=posted["ts"]))

    await webhook.send(text="approved", blocks=[section("approved")], replace_original=True)
    replaced = fake.message(OPS, posted["ts"])
    await webhook.send(delete_original=True)

    assert replaced.text == "approved"
    assert replaced.versions[0].replaced_by == "response_url"
    assert fake.message(OPS, posted["ts"]).deleted is True
    assert len(fake.messages_in(OPS)) == 1


async def test_response_url_block_limits(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.new_response_url(OPS, ALICE))

    response = await webhook.send(text="x", blocks=[section("x" * 3001)])

    assert response.status_code == 400
    assert json.loads(response.body)["error"] == "invalid_blocks"
    assert fake.messages_in(OPS) == []


async def test_response_url_expired(fake: FakeSlack) -> None:
    url = fake.new_response_url(OPS, ALICE)
    fake.response_urls.expire(url)

    response = await AsyncWebhookClient(url).send(text="late")

    assert response.status_code == 404
    assert json.loads(response.body)["error"] == "expired_url"


# Observers and waiting


async def test_subscribers_see_changes(fake: FakeSlack, client: AsyncWebClient) -> None:
    events: list[tuple[str, str]] = []
    unsubscribe = fake.subscribe(lambda event, record: events.append((event, type(record).__name__)))

    posted = await client.chat_postMessage(channel=OPS, text="a")
    await client.chat_update(channel=OPS, ts=posted["ts"], text="b")
    await client.files_upload_v2(channel=OPS, content="c", filename="c.txt")
    unsubscribe()
    await client.chat_postMessage(channel=OPS, text="unseen")

    assert events == [("posted", "Message"), ("updated", "Message"), ("file", "UploadedFile")]


async def test_wait_for_timeout_names_predicate(fake: FakeSlack) -> None:
    with pytest.raises(TimeoutError, match="a message in #ops"):
        await fake.wait_for(lambda f: f.messages_in(OPS), timeout=0.05, description="a message in #ops")


async def test_wait_for_returns_predicate_value(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=OPS, text="here")

    messages = await fake.wait_for(lambda f: f.messages_in(OPS))

    assert messages[0].text == "here"


# Signing and the HTTP driver


def test_sign_matches_slack_vector() -> None:
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )

    signature = sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body.encode())

    assert signature == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


async def test_command_over_http_is_signed(fake: FakeSlack, app: RecordingApp, driver: SlackDriver) -> None:
    delivery = await driver.command("rollout status api", user_id=ALICE, channel_id=OPS)

    [(headers, body)] = app.requests
    fields = {key: values[0] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert delivery.status == 200
    assert delivery.json() == {"text": "received"}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["X-Slack-Request-Timestamp"] == "1733312345"
    assert headers["X-Slack-Signature"] == sign(SIGNING_SECRET, 1733312345, body)
    assert fields["text"] == "rollout status api"
    assert fields["command"] == "/meridian"
    assert fields["user_name"] == "alice"
    assert fields["channel_name"] == "ops"
    assert fields["response_url"].startswith(fake.base_url.removesuffix("api/") + "hooks/")
    assert set(fields) >= {"token", "team_id", "team_domain", "api_app_id", "is_enterprise_install", "trigger_id"}


async def test_trigger_ids_unique(app: RecordingApp, driver: SlackDriver) -> None:
    first = await driver.command("a", user_id=ALICE, channel_id=OPS)
    second = await driver.command("b", user_id=ALICE, channel_id=OPS)

    assert first.payload["trigger_id"] != second.payload["trigger_id"]


async def test_press_sends_block_actions(fake: FakeSlack, app: RecordingApp, driver: SlackDriver) -> None:
    blocks = [
        section("approve rollout?"),
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [button("Approve", action_id="approve"), button("Deny", action_id="deny", value="no")],
        },
    ]
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
    posted = await client.chat_postMessage(channel=OPS, text="approve?", blocks=blocks)

    await driver.press(fake.message(OPS, posted["ts"]), user_id=ALICE, action_id="deny")

    [(_, body)] = app.requests
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == ALICE
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": OPS,
        "is_ephemeral": False,
    }
    assert payload["message"]["ts"] == posted["ts"]
    assert payload["actions"][0]["action_id"] == "deny"
    assert payload["actions"][0]["block_id"] == "decide"
    assert payload["actions"][0]["value"] == "no"
    hook_id = payload["response_url"].rsplit("/", 1)[-1]
    assert fake.response_urls.hooks[hook_id].target_ts == posted["ts"]


async def test_press_by_index_and_missing_button(fake: FakeSlack, app: RecordingApp, driver: SlackDriver) -> None:
    two_buttons = [{"type": "actions", "elements": [button(action_id="a"), button(action_id="b")]}]
    message = fake.post_user_message(OPS, ALICE, "x", blocks=two_buttons)

    delivery = await driver.press(message, user_id=ALICE, index=1)

    assert delivery.payload["actions"][0]["action_id"] == "b"
    with pytest.raises(LookupError, match="no button with action_id 'c'"):
        await driver.press(message, user_id=ALICE, action_id="c")
    with pytest.raises(LookupError, match="2 buttons"):
        await driver.press(message, user_id=ALICE)


async def test_post_raw_keeps_headers(app: RecordingApp, driver: SlackDriver) -> None:
    delivery = await driver.post_raw(b"token=x", {"X-Slack-Request-Timestamp": "not-a-number"})

    [(headers, body)] = app.requests
    assert delivery.status == 200
    assert body == b"token=x"
    assert headers["X-Slack-Request-Timestamp"] == "not-a-number"
    assert "X-Slack-Signature" not in headers


def test_driver_rejects_remote_events_url(fake: FakeSlack) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SlackDriver(fake, signing_secret=SIGNING_SECRET, events_url="http://example.com/slack/events")


# Socket Mode


@pytest.fixture
async def socket_client(fake: FakeSlack) -> AsyncIterator[SocketModeClient]:
    web_client = AsyncWebClient(base_url=fake.base_url)
    client = SocketModeClient(app_token=fake.app_token, web_client=web_client, auto_reconnect_enabled=False)
    yield client
    await client.close()


async def test_socket_mode_envelope_acked(fake: FakeSlack, socket_client: SocketModeClient) -> None:
    received: list[SocketModeRequest] = []

    async def acknowledge(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload={"text": "on it"}))

    socket_client.socket_mode_request_listeners.append(acknowledge)
    await socket_client.connect()
    await fake.wait_for_socket_client()
    driver = SlackDriver(fake, signing_secret=SIGNING_SECRET)

    delivery = await driver.command("status", user_id=ALICE, channel_id=OPS)

    assert delivery.via == "socket"
    assert delivery.acknowledged
    assert delivery.json() == {"text": "on it"}
    assert received[0].type == "slash_commands"
    assert received[0].payload["text"] == "status"
    assert received[0].retry_attempt == 0
    assert fake.calls_to("apps.connections.open")[0].ok


async def test_socket_mode_redelivers_unacked(fake: FakeSlack, socket_client: SocketModeClient) -> None:
    received: list[SocketModeRequest] = []

    async def ack_only_retries(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        if request.retry_attempt:
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    socket_client.socket_mode_request_listeners.append(ack_only_retries)
    await socket_client.connect()
    await fake.wait_for_socket_client()
    driver = SlackDriver(fake, signing_secret=SIGNING_SECRET, ack_timeout=0.2)

    first = await driver.command("status", user_id=ALICE, channel_id=OPS)
    second = await driver.redeliver(first)

    assert not first.acknowledged
    assert second.acknowledged
    assert second.envelope_id == first.envelope_id
    assert [request.retry_attempt for request in received] == [0, 1]
    assert received[1].retry_reason == "timeout"


async def test_socket_mode_press(fake: FakeSlack, client: AsyncWebClient, socket_client: SocketModeClient) -> None:
    received: list[SocketModeRequest] = []

    async def acknowledge(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    socket_client.socket_mode_request_listeners.append(acknowledge)
    await socket_client.connect()
    await fake.wait_for_socket_client()
    one_button = [{"type": "actions", "elements": [button()]}]
    posted = await client.chat_postEphemeral(channel=OPS, user=ALICE, text="x", blocks=one_button)
    driver = SlackDriver(fake, signing_secret=SIGNING_SECRET)

    delivery = await driver.press(fake.message(OPS, posted["message_ts"]), user_id=ALICE)

    assert delivery.acknowledged
    assert received[0].type == "interactive"
    assert received[0].accepts_response_payload is False
    assert received[0].payload["container"]["is_ephemeral"] is True
    assert "message" not in received[0].payload


async def test_socket_mode_reconnects_on_disconnect(fake: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=fake.base_url)
    client = SocketModeClient(app_token=fake.app_token, web_client=web_client)
    try:
        await client.connect()
        await fake.wait_for_socket_client()

        await fake.disconnect_socket_clients()

        await fake.wait_for(lambda f: f.socket_mode.connections_opened == 2, description="a second connection")
        assert len(fake.calls_to("apps.connections.open")) == 2
    finally:
        await client.close()


async def test_connections_open_needs_app_token(fake: FakeSlack, client: AsyncWebClient) -> None:
    raised = await slack_error(client.apps_connections_open(app_token=fake.bot_token))

    assert raised.response["error"] == "not_allowed_token_type"


async def test_send_envelope_without_client(fake: FakeSlack) -> None:
    with pytest.raises(RuntimeError, match="No Socket Mode client"):
        await fake.send_envelope("slash_commands", {"text": "x"})
