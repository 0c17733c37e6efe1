"""`/meridian logs`: concurrent reads of every pod, JSON lines made compact, grep counts, limits."""

from __future__ import annotations

from urllib.parse import parse_qs

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.logs import LogLine
from procedures.deployments import compact_line
from tests.kubernetes.helpers import card_text, thread_text


def log_queries(sandbox: Sandbox) -> list[dict[str, list[str]]]:
    return [parse_qs(request.query) for request in sandbox.kubernetes.requests if request.path.endswith("/log")]


async def test_logs_default_tail(kube: Sandbox) -> None:
    outcome = await kube.command("logs")

    text = card_text(kube, outcome)
    assert "✅ Pod logs — 120 lines from 3 pods (last 100 lines each)" in text
    queries = log_queries(kube)
    assert len(queries) == 3
    for query in queries:
        assert query["tailLines"] == ["100"]
        assert query["container"] == ["api"]
        assert query["limitBytes"] == ["1000000"]
        assert "sinceSeconds" not in query


async def test_logs_json_lines_compact(kube: Sandbox) -> None:
    outcome = await kube.command("logs --tail 2")

    detail = thread_text(kube, outcome)
    assert '"correlation_id"' not in detail
    assert "INFO  meridian_api::" in detail or "WARN  meridian_api::" in detail
    assert detail.count("· 2 lines") == 3


def test_compact_line_formats() -> None:
    line = '{"timestamp":"2026-12-04T12:00:01.5Z","level":"error","target":"meridian_api::db","message":"pool exhausted","correlation_id":"abc-123","pool":"main"}'

    assert compact_line(line) == "12:00:01 ERROR meridian_api::db pool exhausted pool=main [abc-123]"
    assert compact_line("thread 'main' panicked") == "thread 'main' panicked"
    assert compact_line("[1, 2]") == "[1, 2]"


async def test_logs_grep_counts_per_pod(kube: Sandbox) -> None:
    kube.kubernetes.scenario("crash-looping")

    outcome = await kube.command('logs --grep "pool exhausted"')

    text = card_text(kube, outcome)
    pods = kube.kubernetes.deployment.pods
    counts = {pod.name: sum("pool exhausted" in line.text for line in pod.logs[-100:]) for pod in pods}
    assert sum(counts.values()) > 0
    assert f"/pool exhausted/: {sum(counts.values())} matching lines in 3 pods" in text
    for name, count in counts.items():
        assert f"{name}: {count}" in text
    assert "error lines" in text
    assert "⚠️ Pod logs" in text
    assert "panicked" in thread_text(kube, outcome)


async def test_logs_invalid_regex_is_usage_error(kube: Sandbox) -> None:
    outcome = await kube.command('logs --grep "pool ("')

    assert outcome.cards == []
    assert "--grep: `pool (` is not a valid regular expression" in outcome.reply_text
    assert log_queries(kube) == []


async def test_logs_one_pod(kube: Sandbox) -> None:
    pod = kube.kubernetes.deployment.pods[1]

    outcome = await kube.command(f"logs --pod {pod.name} --tail 5 --since 30m")

    assert "5 lines from 1 pods (last 5 lines within 30m each)" in card_text(kube, outcome)
    queries = log_queries(kube)
    assert len(queries) == 1
    assert queries[0]["sinceSeconds"] == ["1800"]
    assert kube.kubernetes.requests[-1].path.endswith(f"/pods/{pod.name}/log")


async def test_logs_since_filters_old_lines(kube: Sandbox) -> None:
    outcome = await kube.command("logs --since 10m")

    pods = kube.kubernetes.deployment.pods
    threshold = kube.kubernetes.cluster.clock() - 600
    expected = sum(1 for pod in pods for line in pod.logs if line.at >= threshold)
    assert f"{expected} lines from 3 pods" in card_text(kube, outcome)


async def test_logs_unknown_pod(kube: Sandbox) -> None:
    outcome = await kube.command("logs --pod meridian-api-nope")

    text = card_text(kube, outcome)
    assert "No pod named `meridian-api-nope` belongs to meridian/meridian-api." in text
    assert log_queries(kube) == []


async def test_logs_pod_waiting_to_start(kube: Sandbox) -> None:
    kube.kubernetes.scenario("bad-deploy")

    outcome = await kube.command("logs --tail 10")

    text = card_text(kube, outcome)
    assert "30 lines from 4 pods" in text
    assert "no logs from 1 pods" in text
    detail = thread_text(kube, outcome)
    assert "is waiting to start: trying and failing to pull image" in detail


async def test_logs_long_output_attached(kube: Sandbox) -> None:
    outcome = await kube.command("logs --tail 1000")

    files = [file for file in kube.slack.files if file.thread_ts == outcome.card.ts]
    assert len(files) == 1
    content = files[0].content.decode()
    assert content.count("== meridian-api-") == 3
    assert len(content) > 2_800
    assert "cut short: the whole text is in the attached file" in thread_text(kube, outcome)


async def test_logs_tail_limit(kube: Sandbox) -> None:
    outcome = await kube.command("logs --tail 20000")

    assert outcome.reply_text.startswith("--tail: `20000` is more than the maximum, 10,000."), "a usage error, before any run"
    assert outcome.cards == []
    assert log_queries(kube) == []


async def test_logs_forbidden_names_permission(kube: Sandbox) -> None:
    kube.kubernetes.deny("get", "pods/log")

    outcome = await kube.command("logs")

    text = card_text(kube, outcome)
    assert "not allowed to get pods/log" in text
    assert "in namespace meridian (HTTP 403)" in text


async def test_logs_escapes_mentions(kube: Sandbox) -> None:
    pod = kube.kubernetes.deployment.pods[0]
    pod.logs.append(LogLine(at=kube.kubernetes.cluster.clock(), text="<!channel> wake up"))

    outcome = await kube.command(f"logs --pod {pod.name} --tail 1")

    replies = kube.slack.thread(outcome.card.channel, outcome.card.ts)
    raw = "".join(reply.text for reply in replies)
    assert "<!channel>" not in raw
    assert "&lt;!channel&gt;" in raw
