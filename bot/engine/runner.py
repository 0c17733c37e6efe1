"""The engine: starts runs, executes their stages in order, persists and shows every transition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bot.engine.audit import AuditEntry
from bot.engine.catalog import Invocation
from bot.engine.context import StepContext, StepSkipped
from bot.engine.procedure import Level, Parallel, Procedure, Step, StepResult
from bot.engine.run import Run, RunState, StepRecord, StepState, utcnow
from bot.engine.view import RunView
from bot.errors import BotError
from bot.observability import context
from bot.observability.metrics import BotMetrics
from bot.observability.redaction import redactor
from bot.store.base import Store

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.targets import Targets

logger = logging.getLogger(__name__)


class RunLogAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['run_id']} {self.extra['step']}] {msg}", kwargs


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        view: RunView,
        targets: Targets,
        settings: Settings,
        metrics: BotMetrics,
    ) -> None:
        self.store = store
        self.view = view
        self.targets = targets
        self.settings = settings
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def submit(self, invocation: Invocation, *, requester: str, channel_id: str, response_url: str | None) -> Run:
        """Record a new run, post its card and start executing it in the background."""
        procedure = invocation.procedure
        run = Run.new(
            procedure,
            args=_storable(invocation.args),
            requester=requester,
            channel_id=channel_id,
            correlation_id=context.correlation_id.get(),
            dry_run=invocation.dry_run,
        )
        context.run_id.set(run.id)
        await self.store.insert_run(run)
        await self._audit(run, actor=requester, action="requested", detail={"command": invocation.text})
        logger.info("Run %s of %s requested by %s in %s", run.id, procedure.name, requester, channel_id)

        try:
            await self.view.post_card(run, procedure, response_url=response_url)
        except BotError as error:
            run.error = error.user_message
            await self._finish(run, procedure, RunState.FAILED, outcome=f"card not posted: {error.message}")
            raise
        await self.store.save_run(run)

        if invocation.dry_run:
            await self._finish(run, procedure, RunState.COMPLETED, outcome="dry run: nothing was changed")
            return run

        self._spawn(self._execute(run, procedure, invocation.args))
        return run

    async def wait_idle(self) -> None:
        """Wait until no run is executing (runs waiting for approval do not count)."""
        await self._idle.wait()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count a request being handled as work, so `wait_idle` also waits for it.

        A handler enters this before it acks; the run it starts is spawned only after the ack.
        """
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            self._update_idle()

    def _update_idle(self) -> None:
        if not self._tasks and not self._busy:
            self._idle.set()

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        self._idle.clear()

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._update_idle()

        task.add_done_callback(forget)

    async def _execute(self, run: Run, procedure: Procedure, args: dict[str, Any]) -> None:
        context.run_id.set(run.id)
        context.correlation_id.set(run.correlation_id)
        results: dict[str, StepResult] = {}
        logger.info("Run %s started", run.id)

        try:
            for index in range(run.next_stage, len(procedure.stages)):
                stage = procedure.stages[index]
                steps = stage.steps if isinstance(stage, Parallel) else (stage,)
                await asyncio.gather(*(self._run_step(run, procedure, step, args, results) for step in steps))

                stage_failed = any(run.step(step.name).state is StepState.FAILED for step in steps)
                if stage_failed:
                    for record in run.steps:
                        if record.state is StepState.PENDING:
                            record.state = StepState.SKIPPED
                            record.summary = "skipped because an earlier step failed"
                    await self._finish(run, procedure, RunState.FAILED, outcome="failed")
                    return

                run.next_stage = index + 1
                await self.store.save_run(run)
        except asyncio.CancelledError:
            logger.warning("Run %s was cancelled while executing (the bot is stopping)", run.id)
            raise

        await self._finish(run, procedure, RunState.COMPLETED, outcome=_outcome(run))

    async def _run_step(
        self,
        run: Run,
        procedure: Procedure,
        step: Step,
        args: dict[str, Any],
        results: dict[str, StepResult],
    ) -> None:
        record = run.step(step.name)
        log = RunLogAdapter(logger, {"run_id": run.id, "step": step.name})
        record.state = StepState.RUNNING
        record.started_at = utcnow()
        await self.store.save_run(run)
        self.view.card_changed(run, procedure)

        async def report_progress(summary: str) -> None:
            record.summary = redactor.scrub(summary)
            self.view.card_changed(run, procedure)

        step_context = StepContext(
            run=run,
            step=record,
            args=args,
            targets=self.targets,
            settings=self.settings,
            log=log,
            results=results,
            report_progress=report_progress,
        )

        try:
            outcome = await asyncio.wait_for(step.run(step_context), timeout=step.timeout)
        except StepSkipped as skipped:
            record.state = StepState.SKIPPED
            record.summary = skipped.reason
        except TimeoutError:
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.summary = f"timed out after {step.timeout:g} s"
            log.warning("Step timed out after %s s", step.timeout)
        except BotError as error:
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.summary = redactor.scrub(error.user_message)
            log.warning("Step failed: %s", error.user_message)
        except Exception:
            error_id = secrets.token_hex(4)
            record.state = StepState.FAILED
            record.level = Level.CRITICAL
            record.error_id = error_id
            record.summary = f"unexpected error (error id {error_id}); the bot's log has the details"
            log.exception("Step failed with an unexpected error, error id %s", error_id)
        else:
            result = _as_result(outcome)
            results[step.name] = result
            record.state = StepState.DONE
            record.level = result.level
            record.summary = redactor.scrub(result.summary)
            if result.detail:
                await self.view.post_detail(run, title=result.detail_title or step.title, text=result.detail)

        record.finished_at = utcnow()
        await self.store.save_run(run)
        self.view.card_changed(run, procedure)

    async def _finish(self, run: Run, procedure: Procedure, state: RunState, *, outcome: str) -> None:
        run.state = state
        run.finished_at = utcnow()
        await self.store.save_run(run)
        await self._audit(run, actor=run.requester, action="finished", outcome=outcome)
        self.metrics.runs.labels(procedure=run.procedure, state=state.value).inc()
        self.metrics.run_duration.labels(procedure=run.procedure).observe((run.finished_at - run.created_at).total_seconds())
        logger.info("Run %s ended: %s (%s)", run.id, state.value, outcome)
        await self.view.card_final(run, procedure)

    async def _audit(self, run: Run, *, actor: str, action: str, outcome: str | None = None, detail: dict[str, Any] | None = None) -> None:
        await self.store.append_audit(
            AuditEntry(
                actor=actor,
                action=action,
                run_id=run.id,
                procedure=run.procedure,
                channel_id=run.channel_id,
                outcome=outcome,
                detail=detail or {},
            )
        )


def _as_result(outcome: StepResult | str | None) -> StepResult:
    if isinstance(outcome, StepResult):
        return outcome
    return StepResult(summary=outcome or "done")


def _outcome(run: Run) -> str:
    levels = [record.level for record in run.steps if record.level is not None]
    problems = sum(level is Level.CRITICAL for level in levels)
    warnings = sum(level is Level.WARNING for level in levels)
    if problems or warnings:
        return f"completed with {problems} critical and {warnings} warning findings"
    return "completed"


def _storable(args: dict[str, Any]) -> dict[str, Any]:
    """Keep argument values that JSON can store; patterns are stored as their source text."""
    stored: dict[str, Any] = {}
    for key, value in args.items():
        pattern = getattr(value, "pattern", None)
        if isinstance(value, (str, int, float, bool)) or value is None:
            stored[key] = value
        elif pattern is not None:
            stored[key] = pattern
        else:
            stored[key] = str(value)
    return stored
