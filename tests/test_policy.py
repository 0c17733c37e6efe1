"""Roles nest, groups resolve through Slack, and an unreadable group never grants a role."""

from __future__ import annotations

import pytest

from bot.engine.policy import Policy, Role, role_to_request
from bot.engine.procedure import Risk
from bot.errors import PermissionDenied, TargetUnavailable


class Groups:
    def __init__(self, members: dict[str, set[str]], *, broken: set[str] = frozenset()) -> None:
        self._members = members
        self._broken = broken
        self.lookups: list[str] = []

    async def members(self, group_id: str) -> frozenset[str]:
        self.lookups.append(group_id)
        if group_id in self._broken:
            raise TargetUnavailable("slack", f"Could not read the members of user group {group_id}.")
        return frozenset(self._members.get(group_id, set()))


def policy(groups: Groups, **roles: list[str]) -> Policy:
    return Policy(
        viewers=roles.get("viewers", []),
        operators=roles.get("operators", []),
        approvers=roles.get("approvers", []),
        admins=roles.get("admins", []),
        groups=groups,
    )


@pytest.mark.parametrize(
    ("user", "role", "expected"),
    [
        ("U0ADMIN", Role.APPROVER, True),
        ("U0ADMIN", Role.VIEWER, True),
        ("U0APPROVER", Role.OPERATOR, True),
        ("U0APPROVER", Role.ADMIN, False),
        ("U0OPERATOR", Role.APPROVER, False),
        ("U0VIEWER", Role.OPERATOR, False),
        ("U0STRANGER", Role.VIEWER, False),
        ("U0ONCALL", Role.APPROVER, True),
    ],
)
async def test_roles_nest(user: str, role: Role, expected: bool) -> None:
    roles = policy(
        Groups({"S0ONCALL": {"U0ONCALL"}}),
        viewers=["U0VIEWER"],
        operators=["U0OPERATOR"],
        approvers=["U0APPROVER", "S0ONCALL"],
        admins=["U0ADMIN"],
    )

    assert await roles.has(user, role) is expected


async def test_empty_viewers_admit_everyone() -> None:
    roles = policy(Groups({}), operators=["U0OPERATOR"])

    assert await roles.has("U0ANYONE", Role.VIEWER)
    assert not await roles.has("U0ANYONE", Role.OPERATOR)


async def test_unreadable_group_fails_closed() -> None:
    roles = policy(Groups({}, broken={"S0ONCALL"}), approvers=["U0APPROVER", "S0ONCALL"])

    assert await roles.has("U0APPROVER", Role.APPROVER), "a direct listing needs no group lookup"
    with pytest.raises(TargetUnavailable):
        await roles.has("U0OTHER", Role.APPROVER)


async def test_refusal_names_role() -> None:
    roles = policy(Groups({}), viewers=["U0VIEWER"])

    with pytest.raises(PermissionDenied) as refused:
        await roles.require("U0VIEWER", Role.OPERATOR, action="run `restart`")

    assert refused.value.role == "operator"
    assert refused.value.user_message == (
        "You need the operator role to run `restart`. An admin can add you, or a user group you are in, to OPERATORS."
    )


@pytest.mark.parametrize(
    ("risk", "role"),
    [(Risk.READ, Role.VIEWER), (Risk.WRITE, Role.OPERATOR), (Risk.HIGH, Role.OPERATOR), (Risk.CRITICAL, Role.OPERATOR)],
)
def test_risk_needs_role(risk: Risk, role: Role) -> None:
    assert role_to_request(risk) is role
