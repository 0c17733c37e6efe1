"""deploy/role.yaml grants exactly the API calls the bot makes: every call is granted, every grant is used.

Two checks keep this independent of test order. Every Kubernetes test runs against a fake that
enforces the Role (see conftest.py), so a call outside it fails the test that makes it. This
test runs every Kubernetes command against one fake and compares the calls with the rules in
both directions. It also checks the calls collected from the tests that ran before it.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import product
from typing import Any

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes import ApiCall
from tests.kubernetes.conftest import SESSION_CALLS, role_rules
from tests.kubernetes.helpers import approve, press, run_state

Grant = tuple[str, str, str, str]  # API group, resource (with subresource), verb, resource name or "*"


def grants(rules: list[dict[str, Any]]) -> set[Grant]:
    expanded: set[Grant] = set()
    for rule in rules:
        names = rule.get("resourceNames") or ["*"]
        for group, resource, verb, name in product(rule["apiGroups"], rule["resources"], rule["verbs"], names):
            expanded.add((group, resource, verb, name))
    return expanded


def is_granted(call: ApiCall, grant: Grant) -> bool:
    group, resource, verb, name = grant
    return (
        group == call.api_group
        and resource == call.resource_path
        and verb == call.verb
        and (name == "*" or name == call.name)
    )


async def exercise_every_command(kube: Sandbox) -> None:
    """Run each Kubernetes command to its end, approving the ones that need it."""
    kube.settings.rotation_watch = timedelta(milliseconds=50)  # the secret rotation's watch after the restart
    for command in ("pods", "logs --tail 5", "rollout status", "rollout history"):
        await kube.command(command)
        assert await run_state(kube) == "completed", command
    pod = kube.kubernetes.deployment.pods[0].name
    await kube.command(f"logs --pod {pod} --grep GET")

    for command, approvers in (("rollback", 1), ("restart", 1), ("scale 5", 1), ("scale 0", 2), ("rotate jwt-secret", 2)):
        outcome = await kube.command(command)
        await approve(kube, outcome)
        if approvers == 2:
            await press(kube, outcome, user=kube.users.second_approver)
        assert await run_state(kube) == "completed", command


def test_role_rules_are_least_privilege() -> None:
    rules = role_rules()

    for rule in rules:
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
        assert not {"create", "delete", "deletecollection", "update", "watch", "escalate", "bind"} & set(rule["verbs"])
    secret_rules = [rule for rule in rules if "secrets" in rule["resources"]]
    assert [rule["resourceNames"] for rule in secret_rules] == [["meridian-secrets"]]
    assert all(rule["resources"] == ["secrets"] for rule in secret_rules)


async def test_role_matches_api_calls(kube: Sandbox) -> None:
    await exercise_every_command(kube)

    calls = set(kube.kubernetes.calls)
    rules = grants(role_rules())
    ungranted = [call for call in calls if not any(is_granted(call, grant) for grant in rules)]
    unused = [grant for grant in rules if not any(is_granted(call, grant) for call in calls)]
    assert ungranted == []
    assert unused == []


def test_session_calls_all_granted() -> None:
    rules = grants(role_rules())

    ungranted = {call for call in SESSION_CALLS if not any(is_granted(call, grant) for grant in rules)}

    assert ungranted == set()
