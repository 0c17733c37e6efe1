"""Background upkeep: run leases, interrupted runs, expired approvals, and the leader's schedule.

Every replica renews the leases of the runs it executes. One replica at a time, the leader
(a lease in the store), marks runs whose owner stopped renewing as interrupted, expires approval
requests, and runs the scheduled jobs. When the leader dies its lease runs out and another
replica takes over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.engine.decisions import expire
from bot.engine.run import RunState, StepState, utcnow
from bot.engine.runner import BOT_ACTOR, Engine
from bot.observability import context

logger = logging.getLogger(__name__)

LEADER_LEASE = "scheduler"


@dataclass(frozen=True)
class Job:
    """A task the leader runs every `interval` seconds."""

    name: str
    interval: float
    run: Callable[[], Awaitable[None]]


class Upkeep:
    def __init__(self, engine: Engine, *, jobs: Sequence[Job] = ()) -> None:
        self.engine = engine
        self.jobs = list(jobs)
        self.is_leader = False
        self._next_run: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self, *, release_leadership: bool = True) -> None:
        for job_task in list(self._running.values()):
            job_task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.is_leader and release_leadership:
            await self.engine.store.release_lease(LEADER_LEASE, self.engine.replica_id)
        self.is_leader = False

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick(wait_for_jobs=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Upkeep tick failed; retrying in %s s", self.engine.timing.tick_seconds)
            await asyncio.sleep(self.engine.timing.tick_seconds)

    async def tick(self, *, wait_for_jobs: bool = True) -> None:
        """Renew leases, and as leader do the upkeep and start the jobs that are due.

        The background loop does not wait for the jobs it starts; a direct caller does by default.
        """
        engine = self.engine
        now = engine.clock()
        until = now + engine.timing.lease_seconds
        await engine.store.renew_run_leases(engine.replica_id, until)

        leader = await engine.store.acquire_lease(LEADER_LEASE, engine.replica_id, until=until, now=now)
        if leader != self.is_leader:
            logger.info("%s %s the scheduler leader", engine.replica_id, "is now" if leader else "is no longer")
            self.is_leader = leader
        if not leader:
            return

        await self.mark_interrupted()
        await self.expire_approvals()
        for job in self.jobs:
            still_running = job.name in self._running
            if now >= self._next_run.get(job.name, 0.0) and not still_running:
                self._next_run[job.name] = now + job.interval
                # A job runs beside the tick, so a slow one never delays the lease renewals.
                task = asyncio.create_task(self._run_job(job))
                self._running[job.name] = task
                task.add_done_callback(lambda _, name=job.name: self._running.pop(name, None))
        if wait_for_jobs:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Scheduled job %s failed", job.name)

    async def mark_interrupted(self) -> None:
        """End every run whose executing replica stopped renewing its lease; never re-run it."""
        engine = self.engine
        for run in await engine.store.runs_with_expired_lease(engine.clock()):
            context.run_id.set(run.id)
            procedure = engine.procedure_for(run)
            for record in run.steps:
                if record.state is StepState.RUNNING:
                    record.state = StepState.FAILED
                    record.summary = "interrupted: the bot stopped while this step ran; it was not run again"
                    record.finished_at = utcnow()
                elif record.state is StepState.PENDING:
                    record.state = StepState.SKIPPED
                    record.summary = "not run: the run was interrupted"
            run.error = "The bot stopped while this run was executing. Check what the step did, then start a new run if needed."
            if await engine.finish(run, procedure, RunState.INTERRUPTED, outcome="interrupted", actor=BOT_ACTOR):
                logger.warning("Run %s was interrupted: its replica stopped renewing the lease", run.id)

    async def expire_approvals(self) -> None:
        engine = self.engine
        now = engine.clock()
        for run in await engine.store.list_runs(states=[RunState.WAITING], limit=500):
            if run.expires_at is not None and run.expires_at.timestamp() <= now:
                await expire(engine, run, engine.procedure_for(run))
