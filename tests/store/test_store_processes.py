"""Two OS processes sharing one store, as two bot replicas would, on SQLite and PostgreSQL.

Each worker process opens the store named by `state_url`, reports "ready", waits for "go" on
stdin so that both start the race together, and reports every outcome as a JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.engine.run import Run, RunState
from bot.store import open_store_for
from procedures.health import HEALTH

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounds for every wait on a worker, in seconds, generous because CI machines can be slow.
STARTUP_TIMEOUT = 30.0
RACE_TIMEOUT = 60.0
LEASE_SECONDS = 1.0
LEASE_POLL_SECONDS = 0.1

WORKER = r"""
import asyncio
import json
import sys
import time

from bot.engine.run import RunState
from bot.store import open_store_for

LEASE_SECONDS = float(sys.argv[4])
LEASE_POLL_SECONDS = float(sys.argv[5])
# A lease worker stops on its own after this long, in case the test that started it failed.
LEASE_WORKER_DEADLINE = 60.0


def report(**fields):
    print(json.dumps(fields), flush=True)


async def claim_deliveries(store, name, keys):
    for key in keys:
        if await store.claim_delivery(key):
            report(event="claimed", key=key)


async def transition_runs(store, name, run_ids):
    for run_id in run_ids:
        run = await store.get_run(run_id)
        run.state = RunState.COMPLETED if name == "a" else RunState.CANCELLED
        run.error = f"written by {name}"
        if await store.save_run(run, expected=[RunState.WAITING]):
            report(event="won", run_id=run_id)


async def hold_lease(store, name):
    # Try to take or renew the lease until this worker has taken it over from another owner.
    rejected = False
    deadline = time.monotonic() + LEASE_WORKER_DEADLINE
    while time.monotonic() < deadline:
        now = time.time()
        until = now + LEASE_SECONDS
        held = await store.acquire_lease("scheduler", name, until=until, now=now)
        report(event="lease", held=held, now=now, until=until)
        if held and rejected:
            return
        rejected = rejected or not held
        await asyncio.sleep(LEASE_POLL_SECONDS)


async def main(url, task, name, _lease_seconds, _lease_poll_seconds, *arguments):
    store = open_store_for(url)
    await store.open()
    try:
        report(event="ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if task == "deliveries":
            await claim_deliveries(store, name, arguments[0].split(","))
        elif task == "transition":
            await transition_runs(store, name, arguments[0].split(","))
        elif task == "lease":
            await hold_lease(store, name)
        else:
            raise ValueError(f"unknown worker task: {task}")
    finally:
        await store.close()


asyncio.run(main(*sys.argv[1:]))
"""


class Worker:
    """One worker process and the JSON reports it has written so far."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.reports: list[dict[str, Any]] = []
        self.stderr = b""

    async def read_ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=STARTUP_TIMEOUT)
        if not line:
            await self.process.wait()
            assert self.process.stderr is not None
            stderr = (await self.process.stderr.read()).decode()
            pytest.fail(f"worker {self.name} exited before it was ready:\n{stderr}")
        assert json.loads(line) == {"event": "ready"}

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def collect(self, changed: asyncio.Event) -> None:
        """Read reports until the process closes stdout, then keep its stderr for messages."""
        assert self.process.stdout is not None and self.process.stderr is not None
        async for line in self.process.stdout:
            self.reports.append(json.loads(line))
            changed.set()
        self.stderr = await self.process.stderr.read()
        changed.set()

    async def finish(self) -> None:
        """Wait for a clean exit and fail with the worker's stderr otherwise."""
        returncode = await asyncio.wait_for(self.process.wait(), timeout=RACE_TIMEOUT)
        assert returncode == 0, f"worker {self.name} exited with {returncode}:\n{self.stderr.decode()}"

    def events(self, event: str) -> list[dict[str, Any]]:
        return [report for report in self.reports if report["event"] == event]


@contextlib.asynccontextmanager
async def racing_workers(url: str, task: str, *arguments: str) -> AsyncIterator[tuple[Worker, Worker, asyncio.Event]]:
    """Start workers "a" and "b", release them together, and collect their reports.

    Workers still running when the block ends are killed.
    """
    workers = []
    readers = []
    changed = asyncio.Event()
    try:
        for name in ("a", "b"):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                url,
                task,
                name,
                str(LEASE_SECONDS),
                str(LEASE_POLL_SECONDS),
                *arguments,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            workers.append(Worker(name, process))
        for worker in workers:
            await worker.read_ready()
        for worker in workers:
            readers.append(asyncio.create_task(worker.collect(changed)))
        for worker in workers:
            await worker.go()

        yield workers[0], workers[1], changed

        await asyncio.wait_for(asyncio.gather(*readers), timeout=RACE_TIMEOUT)
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        for reader in readers:
            reader.cancel()


async def wait_until(
    condition: Callable[[], bool],
    changed: asyncio.Event,
    *,
    timeout: float,
    waiting_for: str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out after {timeout} s waiting for {waiting_for}")
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=remaining)


async def test_processes_claim_each_delivery_once(state_url: str) -> None:
    keys = [f"Ev{index:04d}" for index in range(50)]

    # The workers open the new store at the same time, so they also race its migrations.
    async with racing_workers(state_url, "deliveries", ",".join(keys)) as (first, second, _changed):
        await first.finish()
        await second.finish()

    claimed_by_first = [report["key"] for report in first.events("claimed")]
    claimed_by_second = [report["key"] for report in second.events("claimed")]
    assert set(claimed_by_first).isdisjoint(claimed_by_second)
    assert sorted(claimed_by_first + claimed_by_second) == keys


async def test_processes_transition_run_once(state_url: str) -> None:
    store = open_store_for(state_url)
    await store.open()
    try:
        runs = []
        for _ in range(20):
            run = Run.new(HEALTH, args={}, requester="U_REQUESTER", channel_id="C_OPS", correlation_id=None)
            run.state = RunState.WAITING
            await store.insert_run(run)
            runs.append(run)
        run_ids = [run.id for run in runs]

        async with racing_workers(state_url, "transition", ",".join(run_ids)) as (first, second, _changed):
            await first.finish()
            await second.finish()

        won_by = {report["run_id"]: "a" for report in first.events("won")}
        won_by_second = {report["run_id"]: "b" for report in second.events("won")}
        assert won_by.keys().isdisjoint(won_by_second.keys())
        won_by |= won_by_second
        assert sorted(won_by) == sorted(run_ids)
        for run_id, winner in won_by.items():
            stored = await store.get_run(run_id)
            assert stored is not None
            assert stored.error == f"written by {winner}"
            assert stored.state is (RunState.COMPLETED if winner == "a" else RunState.CANCELLED)
    finally:
        await store.close()


def held_intervals(worker: Worker) -> list[tuple[float, float]]:
    return [(report["now"], report["until"]) for report in worker.events("lease") if report["held"]]


async def test_processes_lease_taken_over_after_holder_killed(state_url: str) -> None:
    async with racing_workers(state_url, "lease") as (first, second, changed):

        def holder() -> Worker | None:
            for worker in (first, second):
                if held_intervals(worker):
                    return worker
            return None

        await wait_until(
            lambda: holder() is not None,
            changed,
            timeout=STARTUP_TIMEOUT,
            waiting_for="either worker to take the lease",
        )
        leader = holder()
        assert leader is not None
        challenger = second if leader is first else first

        def challenger_rejected_repeatedly() -> bool:
            return sum(not report["held"] for report in challenger.events("lease")) >= 5

        await wait_until(
            challenger_rejected_repeatedly,
            changed,
            timeout=RACE_TIMEOUT,
            waiting_for="the challenger to be rejected",
        )

        # SIGKILL, so the leader neither releases the lease nor closes its connections.
        leader.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        await asyncio.wait_for(leader.process.wait(), timeout=RACE_TIMEOUT)

        await wait_until(
            lambda: bool(held_intervals(challenger)),
            changed,
            timeout=LEASE_SECONDS + RACE_TIMEOUT,
            waiting_for="the challenger to take the lease over",
        )
        await challenger.finish()

    assert leader.process.returncode == -signal.SIGKILL
    # The leader renewed every time it tried, until it was killed.
    assert all(report["held"] for report in leader.events("lease"))

    taken_at = held_intervals(challenger)[0][0]
    assert taken_at > killed_at
    assert taken_at < killed_at + LEASE_SECONDS + 10.0
    # Leases never overlap: the challenger took over only after the leader's last lease ended.
    assert taken_at > max(until for _now, until in held_intervals(leader))
