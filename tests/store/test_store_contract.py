"""The `Store` contract, checked on every implementation through the `state_url` fixture.

Each test runs once on a SQLite file and once on a fresh PostgreSQL database. The races here
are concurrent tasks in one process, and tests/store/test_store_processes.py races two processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from bot.engine.audit import AuditEntry
from bot.engine.procedure import Level, Risk
from bot.engine.run import Run, RunState, StepState
from bot.store import open_store_for
from bot.store.base import Store
from bot.store.migrations import MIGRATIONS
from procedures.health import HEALTH

FINAL_STATES = [state for state in RunState if state.is_final]
BASE_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[Store]:
    store = open_store_for(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[Store]:
    async with opened_store(state_url) as opened:
        yield opened


def new_run(
    *,
    state: RunState = RunState.RUNNING,
    created_at: datetime | None = None,
    requester: str = "U_REQUESTER",
) -> Run:
    run = Run.new(HEALTH, args={}, requester=requester, channel_id="C_OPS", correlation_id=None)
    run.state = state
    if created_at is not None:
        run.created_at = created_at
    return run


async def insert_runs(store: Store, *states: RunState) -> list[Run]:
    runs = [new_run(state=state) for state in states]
    for run in runs:
        await store.insert_run(run)
    return runs


async def applied_migrations(url: str) -> list[int]:
    """Read schema_migrations directly from the database, bypassing the store."""
    query = "SELECT version FROM schema_migrations ORDER BY version"
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as database:
            return [row[0] for row in database.execute(query)]
    connection = await asyncpg.connect(url)
    try:
        return [row[0] for row in await connection.fetch(query)]
    finally:
        await connection.close()


ALL_MIGRATIONS = [version for version, _name, _statements in MIGRATIONS]


# Migrations


async def test_reopening_keeps_data_and_migrates_once(state_url: str) -> None:
    run = new_run()
    async with opened_store(state_url) as store:
        await store.insert_run(run)
        await store.append_audit(
            AuditEntry(actor="U1", action="requested", run_id=run.id, procedure="health", channel_id="C1")
        )
    assert await applied_migrations(state_url) == ALL_MIGRATIONS

    async with opened_store(state_url) as store:
        assert await store.get_run(run.id) == run
        assert len(await store.list_audit()) == 1

    assert await applied_migrations(state_url) == ALL_MIGRATIONS


async def test_concurrent_opens_migrate_once(state_url: str) -> None:
    stores = [open_store_for(state_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        run = new_run()
        await stores[0].insert_run(run)

        assert await stores[3].get_run(run.id) == run
    finally:
        for store in stores:
            await store.close()

    assert await applied_migrations(state_url) == ALL_MIGRATIONS


# Runs


async def test_run_round_trips_every_field(store: Store) -> None:
    run = Run.new(
        HEALTH,
        args={"environment": "staging", "limit": 3, "dry": False, "tags": ["a", "b"], "nested": {"x": 1.5, "y": None}},
        requester="U_ALICE",
        channel_id="C_OPS",
        correlation_id="corr-42",
        dry_run=True,
    )
    run.created_at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    run.finished_at = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)
    run.state = RunState.FAILED
    run.message_ts = "1714564800.000100"
    run.next_stage = 1
    run.error = "API /health timed out"
    first, second = run.steps[0], run.steps[1]
    first.state = StepState.DONE
    first.summary = "ok · version 0.1.0"
    first.level = Level.WARNING
    first.started_at = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    first.finished_at = datetime(2024, 5, 1, 12, 0, 2, 500000, tzinfo=UTC)
    second.state = StepState.FAILED
    second.error_id = "E-7F3A"

    await store.insert_run(run)
    stored = await store.get_run(run.id)

    assert stored == run
    assert stored is not None
    assert stored.risk is Risk.READ
    assert stored.steps[0].seconds == 1.5
    assert stored.created_at.tzinfo is not None


async def test_get_run_unknown_id_returns_none(store: Store) -> None:
    assert await store.get_run("R_MISSING") is None


async def test_list_runs_filters_and_orders_newest_first(store: Store) -> None:
    # Inserted out of order. Two runs are one microsecond apart, and one of them is on a whole second.
    states_and_offsets = [
        (RunState.RUNNING, timedelta(minutes=3)),
        (RunState.WAITING, timedelta(minutes=1)),
        (RunState.COMPLETED, timedelta(minutes=5)),
        (RunState.WAITING, timedelta(minutes=2, microseconds=1)),
        (RunState.RUNNING, timedelta(minutes=2)),
        (RunState.FAILED, timedelta(0)),
    ]
    runs = []
    for state, offset in states_and_offsets:
        run = new_run(state=state, created_at=BASE_TIME + offset)
        await store.insert_run(run)
        runs.append(run)

    every_run = await store.list_runs()
    active = await store.list_runs(states=[RunState.RUNNING, RunState.WAITING])
    waiting = await store.list_runs(states=[RunState.WAITING])

    newest_first = sorted(runs, key=lambda run: run.created_at, reverse=True)
    assert [run.id for run in every_run] == [run.id for run in newest_first]
    assert [run.id for run in active] == [run.id for run in newest_first if not run.state.is_final]
    assert [run.id for run in waiting] == [runs[3].id, runs[1].id]
    assert await store.list_runs(states=[RunState.DENIED]) == []


async def test_list_runs_orders_by_instant_across_offsets(store: Store) -> None:
    berlin = timezone(timedelta(hours=2))
    # 13:30 in Berlin is 11:30 UTC, so it is the oldest of the three.
    early = new_run(created_at=datetime(2024, 5, 1, 13, 30, tzinfo=berlin))
    middle = new_run(created_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    late = new_run(created_at=datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC))
    for run in (early, late, middle):
        await store.insert_run(run)

    listed = await store.list_runs()

    assert [run.id for run in listed] == [late.id, middle.id, early.id]
    assert listed[2].created_at == early.created_at


async def test_list_runs_limit(store: Store) -> None:
    for minute in range(5):
        await store.insert_run(new_run(created_at=BASE_TIME + timedelta(minutes=minute)))

    listed = await store.list_runs(limit=2)

    assert [run.created_at for run in listed] == [BASE_TIME + timedelta(minutes=4), BASE_TIME + timedelta(minutes=3)]
    assert len(await store.list_runs(states=[RunState.RUNNING], limit=3)) == 3


async def test_list_runs_empty_states_returns_nothing(store: Store) -> None:
    await insert_runs(store, RunState.RUNNING)

    assert await store.list_runs(states=[]) == []


async def test_save_run_without_expected_overwrites(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.RUNNING)
    run.state = RunState.COMPLETED
    run.finished_at = BASE_TIME
    run.channel_id = "C_MOVED"

    assert await store.save_run(run) is True
    assert await store.get_run(run.id) == run
    assert await store.list_runs(states=[RunState.RUNNING]) == []


async def test_save_run_unknown_run_returns_false(store: Store) -> None:
    assert await store.save_run(new_run()) is False


async def test_save_run_expected_state_must_match(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.WAITING)
    attempt = copy.deepcopy(run)
    attempt.state = RunState.CANCELLED

    assert await store.save_run(attempt, expected=[RunState.RUNNING]) is False
    assert (await store.get_run(run.id)) == run

    assert await store.save_run(attempt, expected=[RunState.RUNNING, RunState.WAITING]) is True
    assert (await store.get_run(run.id)) == attempt

    again = copy.deepcopy(run)
    again.state = RunState.EXPIRED
    assert await store.save_run(again, expected=[RunState.WAITING]) is False
    assert (await store.get_run(run.id)) == attempt


async def test_save_run_empty_expected_writes_nothing(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.WAITING)
    attempt = copy.deepcopy(run)
    attempt.state = RunState.DENIED

    assert await store.save_run(attempt, expected=[]) is False
    assert (await store.get_run(run.id)) == run


async def test_save_run_transition_one_winner(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.WAITING)
    copies = []
    for index in range(20):
        attempt = copy.deepcopy(run)
        attempt.state = FINAL_STATES[index % len(FINAL_STATES)] if index % 3 else RunState.RUNNING
        attempt.error = f"written by copy {index}"
        copies.append(attempt)

    results = await asyncio.gather(*(store.save_run(attempt, expected=[RunState.WAITING]) for attempt in copies))

    assert results.count(True) == 1
    winner = copies[results.index(True)]
    assert await store.get_run(run.id) == winner


async def test_save_run_sets_columns_only_when_passed(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.RUNNING)
    assert await store.run_expiry(run.id) is None
    assert await store.renew_run_leases("replica-a", until=50.0) == 0

    await store.save_run(run, owner="replica-a", lease_expires=100.0, expires_at=900.0)
    assert await store.run_expiry(run.id) == 900.0
    assert [listed.id for listed in await store.runs_with_expired_lease(now=101.0)] == [run.id]
    assert await store.runs_with_expired_lease(now=99.0) == []
    assert await store.renew_run_leases("replica-a", until=100.0) == 1

    # A save that names none of the three columns leaves them as they are.
    run.error = "still running"
    await store.save_run(run)
    assert await store.run_expiry(run.id) == 900.0
    assert [listed.id for listed in await store.runs_with_expired_lease(now=101.0)] == [run.id]
    assert await store.renew_run_leases("replica-a", until=100.0) == 1

    # Passing None clears a column.
    await store.save_run(run, owner=None, lease_expires=None, expires_at=None)
    assert await store.run_expiry(run.id) is None
    assert await store.runs_with_expired_lease(now=1e12) == []
    assert await store.renew_run_leases("replica-a", until=100.0) == 0


async def test_save_run_accepts_whole_seconds(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.RUNNING)

    await store.save_run(run, owner="replica-a", lease_expires=100, expires_at=900)

    assert await store.run_expiry(run.id) == 900.0
    assert [listed.id for listed in await store.runs_with_expired_lease(now=101)] == [run.id]


async def test_run_expiry(store: Store) -> None:
    waiting, other = await insert_runs(store, RunState.WAITING, RunState.WAITING)
    assert await store.run_expiry("R_MISSING") is None
    assert await store.run_expiry(waiting.id) is None

    await store.save_run(waiting, expires_at=1_714_564_800.25)

    assert await store.run_expiry(waiting.id) == 1_714_564_800.25
    assert await store.run_expiry(other.id) is None


# Audit log


def audit_entry(
    minute: int,
    *,
    actor: str = "U_ALICE",
    procedure: str | None = "health",
    run_id: str | None = "R1",
) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action="requested",
        run_id=run_id,
        procedure=procedure,
        channel_id="C_OPS",
        outcome="ok",
        detail={"minute": minute, "args": {"environment": "staging"}},
        at=BASE_TIME + timedelta(minutes=minute),
    )


async def test_audit_round_trips_every_field(store: Store) -> None:
    entry = AuditEntry(
        actor="U_ALICE",
        action="finished",
        run_id="R1",
        procedure="health",
        channel_id="C_OPS",
        outcome="failed",
        detail={"error_id": "E-1", "steps": [1, 2], "ratio": 0.5, "missing": None},
        at=datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
    )
    bare = AuditEntry(actor="system", action="interrupted", run_id=None, procedure=None, channel_id=None, at=BASE_TIME)

    await store.append_audit(entry)
    await store.append_audit(bare)

    assert await store.list_audit() == [entry, bare]


async def test_audit_filters_limit_and_order(store: Store) -> None:
    entries = [
        audit_entry(3, actor="U_ALICE", procedure="health", run_id="R1"),
        audit_entry(1, actor="U_BOB", procedure="health", run_id="R2"),
        audit_entry(5, actor="U_ALICE", procedure="restart", run_id="R3"),
        audit_entry(2, actor="U_ALICE", procedure="health", run_id="R1"),
        audit_entry(4, actor="U_BOB", procedure=None, run_id=None),
    ]
    for entry in entries:
        await store.append_audit(entry)

    def minutes(listed: list[AuditEntry]) -> list[int]:
        return [entry.detail["minute"] for entry in listed]

    assert minutes(await store.list_audit()) == [5, 4, 3, 2, 1]
    assert minutes(await store.list_audit(limit=2)) == [5, 4]
    assert minutes(await store.list_audit(actor="U_ALICE")) == [5, 3, 2]
    assert minutes(await store.list_audit(procedure="health")) == [3, 2, 1]
    assert minutes(await store.list_audit(run_id="R1")) == [3, 2]
    assert minutes(await store.list_audit(actor="U_ALICE", procedure="health", limit=1)) == [3]
    assert minutes(await store.list_audit(actor="U_BOB", run_id="R1")) == []


async def test_audit_orders_by_instant_across_offsets(store: Store) -> None:
    new_york = timezone(timedelta(hours=-4))
    # 09:00 in New York is 13:00 UTC, so it is the newest entry.
    entries = [
        audit_entry(0),
        replace(audit_entry(1), at=datetime(2024, 5, 1, 9, 0, tzinfo=new_york)),
        replace(audit_entry(2), at=datetime(2024, 5, 1, 12, 30, 0, 500, tzinfo=UTC)),
    ]
    for entry in entries:
        await store.append_audit(entry)

    listed = await store.list_audit()

    assert [entry.detail["minute"] for entry in listed] == [1, 2, 0]
    assert [entry.at for entry in listed] == [entries[1].at, entries[2].at, entries[0].at]


# Deliveries


async def test_claim_delivery_once(store: Store) -> None:
    assert await store.claim_delivery("Ev01") is True
    assert await store.claim_delivery("Ev01") is False
    assert await store.claim_delivery("Ev02") is True


async def test_claim_delivery_concurrent_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_delivery("Ev-race") for _ in range(20)))

    assert results.count(True) == 1


# Approvals


async def test_add_approval_idempotent_per_approver(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.WAITING)

    assert await store.add_approval(run.id, "U_BOB", "digest-1") is True
    assert await store.add_approval(run.id, "U_BOB", "digest-2") is False
    assert await store.add_approval(run.id, "U_CAROL", "digest-1") is True

    approvals = await store.list_approvals(run.id)
    recorded = [(approval.approver, approval.digest) for approval in approvals]
    assert recorded == [("U_BOB", "digest-1"), ("U_CAROL", "digest-1")]


async def test_add_approval_concurrent_duplicates_one_winner(store: Store) -> None:
    (run,) = await insert_runs(store, RunState.WAITING)

    results = await asyncio.gather(*(store.add_approval(run.id, "U_BOB", "digest-1") for _ in range(20)))

    assert results.count(True) == 1
    assert len(await store.list_approvals(run.id)) == 1


async def test_list_approvals_in_order_per_run(store: Store) -> None:
    first, second = await insert_runs(store, RunState.WAITING, RunState.WAITING)
    for approver in ("U_CAROL", "U_ALICE", "U_BOB"):
        await store.add_approval(first.id, approver, "digest-1")
    await store.add_approval(second.id, "U_DAVE", "digest-2")

    approvals = await store.list_approvals(first.id)

    assert [approval.approver for approval in approvals] == ["U_CAROL", "U_ALICE", "U_BOB"]
    assert {approval.run_id for approval in approvals} == {first.id}
    assert all(approval.at.tzinfo is not None for approval in approvals)
    assert await store.list_approvals("R_MISSING") == []


# Target locks


async def test_lock_returns_active_holder(store: Store) -> None:
    holder, waiting_holder, other = await insert_runs(store, RunState.RUNNING, RunState.WAITING, RunState.RUNNING)

    assert await store.acquire_lock("deploy:staging", holder.id) is None
    assert await store.acquire_lock("deploy:staging", other.id) == holder.id
    assert await store.acquire_lock("deploy:staging", holder.id) is None

    assert await store.acquire_lock("deploy:prod", waiting_holder.id) is None
    assert await store.acquire_lock("deploy:prod", other.id) == waiting_holder.id


@pytest.mark.parametrize("final_state", FINAL_STATES, ids=str)
async def test_lock_handed_over_when_holder_final(store: Store, final_state: RunState) -> None:
    holder, other, third = await insert_runs(store, RunState.RUNNING, RunState.RUNNING, RunState.RUNNING)
    await store.acquire_lock("deploy:staging", holder.id)

    holder.state = final_state
    await store.save_run(holder)

    assert await store.acquire_lock("deploy:staging", other.id) is None
    assert await store.acquire_lock("deploy:staging", third.id) == other.id


async def test_lock_concurrent_acquisition_one_winner(store: Store) -> None:
    runs = await insert_runs(store, *[RunState.RUNNING] * 10)

    results = await asyncio.gather(*(store.acquire_lock("deploy:staging", run.id) for run in runs))

    assert results.count(None) == 1
    winner = runs[results.index(None)]
    assert [result for result in results if result is not None] == [winner.id] * 9


async def test_lock_concurrent_takeover_one_winner(store: Store) -> None:
    (finished,) = await insert_runs(store, RunState.RUNNING)
    await store.acquire_lock("deploy:staging", finished.id)
    finished.state = RunState.COMPLETED
    await store.save_run(finished)
    runs = await insert_runs(store, *[RunState.RUNNING] * 10)

    results = await asyncio.gather(*(store.acquire_lock("deploy:staging", run.id) for run in runs))

    assert results.count(None) == 1
    winner = runs[results.index(None)]
    assert [result for result in results if result is not None] == [winner.id] * 9


async def test_release_locks_frees_only_that_run(store: Store) -> None:
    first, second, third = await insert_runs(store, RunState.RUNNING, RunState.RUNNING, RunState.RUNNING)
    await store.acquire_lock("deploy:staging", first.id)
    await store.acquire_lock("cache:staging", first.id)
    await store.acquire_lock("deploy:prod", second.id)

    await store.release_locks(first.id)

    assert await store.acquire_lock("deploy:staging", third.id) is None
    assert await store.acquire_lock("cache:staging", third.id) is None
    assert await store.acquire_lock("deploy:prod", third.id) == second.id


# Run leases


async def test_renew_run_leases_owner_running_only(store: Store) -> None:
    mine, theirs, mine_waiting, mine_done = await insert_runs(
        store, RunState.RUNNING, RunState.RUNNING, RunState.WAITING, RunState.COMPLETED
    )
    await store.save_run(mine, owner="replica-a", lease_expires=100.0)
    await store.save_run(theirs, owner="replica-b", lease_expires=100.0)
    await store.save_run(mine_waiting, owner="replica-a", lease_expires=100.0)
    await store.save_run(mine_done, owner="replica-a", lease_expires=100.0)

    assert await store.renew_run_leases("replica-a", until=1000.0) == 1

    # Make every run running again, keeping its lease, to read the leases back.
    for run in (mine_waiting, mine_done):
        run.state = RunState.RUNNING
        await store.save_run(run)
    expired = {run.id for run in await store.runs_with_expired_lease(now=500.0)}
    assert expired == {theirs.id, mine_waiting.id, mine_done.id}


async def test_runs_with_expired_lease(store: Store) -> None:
    expired, current, boundary, no_lease, waiting, finished = await insert_runs(
        store, RunState.RUNNING, RunState.RUNNING, RunState.RUNNING, RunState.RUNNING, RunState.WAITING, RunState.FAILED
    )
    await store.save_run(expired, owner="replica-a", lease_expires=100.0)
    await store.save_run(current, owner="replica-a", lease_expires=300.0)
    await store.save_run(boundary, owner="replica-a", lease_expires=200.0)
    await store.save_run(waiting, owner="replica-a", lease_expires=100.0)
    await store.save_run(finished, owner="replica-a", lease_expires=100.0)

    listed = await store.runs_with_expired_lease(now=200.0)

    assert [run.id for run in listed] == [expired.id]
    assert listed[0] == expired
    assert no_lease.id not in {run.id for run in await store.runs_with_expired_lease(now=1e12)}


# Leadership leases


async def test_lease_renewed_then_taken_over(store: Store) -> None:
    assert await store.acquire_lease("scheduler", "replica-a", until=110.0, now=100.0) is True
    assert await store.acquire_lease("scheduler", "replica-a", until=120.0, now=105.0) is True

    assert await store.acquire_lease("scheduler", "replica-b", until=125.0, now=115.0) is False
    # The renewal moved the expiry to 120, so the lease is still held at 119 and at 120 itself.
    assert await store.acquire_lease("scheduler", "replica-b", until=129.0, now=119.0) is False
    assert await store.acquire_lease("scheduler", "replica-b", until=130.0, now=120.0) is False

    assert await store.acquire_lease("scheduler", "replica-b", until=131.0, now=121.0) is True
    assert await store.acquire_lease("scheduler", "replica-a", until=132.0, now=122.0) is False
    assert await store.acquire_lease("other-job", "replica-a", until=132.0, now=122.0) is True


async def test_release_lease_only_by_owner(store: Store) -> None:
    await store.acquire_lease("scheduler", "replica-a", until=200.0, now=100.0)

    await store.release_lease("scheduler", "replica-b")
    assert await store.acquire_lease("scheduler", "replica-b", until=210.0, now=110.0) is False

    await store.release_lease("scheduler", "replica-a")
    assert await store.acquire_lease("scheduler", "replica-b", until=210.0, now=110.0) is True
    await store.release_lease("missing", "replica-a")


async def test_lease_concurrent_acquisition_one_winner(store: Store) -> None:
    owners = [f"replica-{index}" for index in range(10)]

    attempts = [store.acquire_lease("scheduler", owner, until=200.0, now=100.0) for owner in owners]
    results = await asyncio.gather(*attempts)

    assert results.count(True) == 1


async def test_job_runs_recorded_per_job(state_url: str) -> None:
    from bot.store import open_store_for

    store = open_store_for(state_url)
    await store.open()
    try:
        assert await store.last_job_run("backup-verify") is None
        await store.record_job_run("backup-verify", 1_000.5)
        await store.record_job_run("backup-verify", 2_000.25)
        await store.record_job_run("other", 5.0)

        assert await store.last_job_run("backup-verify") == 2_000.25
        assert await store.last_job_run("other") == 5.0
    finally:
        await store.close()
