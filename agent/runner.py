"""Run one pipeline per selected resource type and follow discovery changes.

At start the runner asks the sink for its checkpoints: a type with one resumes its watch
from it (no LIST), a type without one starts with a snapshot. Discovery is refreshed every
``selection.discovery_refresh`` seconds: new types (a CRD just installed) get a pipeline;
types no longer served are stopped and removed from the sink; a type whose preferred
version changed is restarted with a fresh snapshot. Groups whose discovery failed this
round keep their pipelines (an aggregated API being down is not a deletion).

On shutdown, :meth:`Runner.drain` lets every pipeline deliver what it holds before the
runner is cancelled (see ``agent.pipeline``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from agent.backoff import Backoff
from agent.buffer import Budget
from agent.discovery import Discovery, discover
from agent.errors import KubeClientError
from agent.informer import InformerSettings
from agent.kubeclient import KubeClient
from agent.pipeline import Pipeline, PipelineSettings
from agent.selection import Selection
from agent.sink import Sink, SinkError
from agent.status import TypeStatus
from kube.resources import ResourceType
from kube.tasks import STOP_TIMEOUT_S, stop_tasks

logger = logging.getLogger(__name__)


@dataclass
class _Running:
    rtype: ResourceType
    task: asyncio.Task[None]
    status: TypeStatus
    pipeline: Pipeline


class Runner:
    """The agent's main loop; :meth:`run` until cancelled, then nothing is left running."""

    def __init__(
        self,
        *,
        client: KubeClient,
        sink: Sink,
        selection: Selection | None = None,
        informer_settings: InformerSettings | None = None,
        pipeline_settings: PipelineSettings | None = None,
    ) -> None:
        self.client = client
        self.sink = sink
        self.selection = selection or Selection()
        self.informer_settings = _with_selection(informer_settings or InformerSettings(), self.selection)
        self.pipeline_settings = pipeline_settings or PipelineSettings()
        # What every pipeline holds counts against one bound: per-type bounds add up.
        self.budget = Budget(self.pipeline_settings.in_flight_bytes)
        self._running: dict[str, _Running] = {}
        self._removals: dict[str, ResourceType] = {}  # gone types whose removal is not yet acknowledged
        self._backoff = Backoff(base=1.0, cap=60.0)
        self.discovered = asyncio.Event()  # set after the first successful round
        self.discovery_error: str | None = None  # why the last round failed, None once one works
        self.draining = False

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Per-type status for health reporting, keyed by ``ResourceType.key``."""
        return {key: run.status.as_dict() for key, run in sorted(self._running.items())}

    @property
    def types(self) -> list[ResourceType]:
        return [run.rtype for run in self._running.values()]

    async def run(self) -> None:
        try:
            while True:
                delay = self.selection.discovery_refresh
                try:
                    await self.refresh()
                    self._backoff.reset()
                    self.discovery_error = None
                except (KubeClientError, SinkError) as exc:
                    delay = min(delay, self._backoff.next_delay())
                    self.discovery_error = str(exc)
                    logger.warning("discovery round failed", extra={"error": str(exc)})
                await asyncio.sleep(delay)
        finally:
            await self.stop()

    async def refresh(self) -> None:
        """One discovery round: start, restart and stop pipelines to match the cluster."""
        if self.draining:
            return
        found = await discover(self.client)
        wanted = {rtype.key: rtype for rtype in self.selection.select(found.types)}
        await self._stop_gone(wanted, found)
        await self._remove_pending(wanted)
        for key in [key for key, run in self._running.items() if run.task.done()]:
            # A pipeline only ends by crashing (a bug): start it again rather than lose the type.
            logger.error("restarting a crashed pipeline", extra={"resource": key})
            self._running.pop(key)
        new = [rtype for key, rtype in wanted.items() if key not in self._running]
        if new:
            checkpoints = await self.sink.checkpoints()
            for rtype in new:
                self._start(rtype, checkpoints.get(rtype.key))
        self.discovered.set()

    async def _stop_gone(self, wanted: dict[str, ResourceType], found: Discovery) -> None:
        for key, run in list(self._running.items()):
            rtype = wanted.get(key)
            if rtype == run.rtype:
                continue
            if rtype is None and run.rtype.group in found.failed_groups:
                continue  # not answering right now is not "gone"
            await self._stop_one(key)
            if rtype is None:
                logger.info("resource type gone, removing", extra={"resource": key})
                self._removals[key] = run.rtype
            else:
                logger.info("preferred version changed", extra={"resource": key, "version": rtype.version})

    async def _remove_pending(self, wanted: dict[str, ResourceType]) -> None:
        """Remove gone types from the sink; one that failed is retried next round."""
        for key, rtype in list(self._removals.items()):
            if key in wanted:  # it came back before its removal went through
                del self._removals[key]
                continue
            await self.sink.remove_type(rtype)
            del self._removals[key]

    def _start(self, rtype: ResourceType, checkpoint: str | None) -> None:
        status = TypeStatus(key=rtype.key)
        pipeline = Pipeline(
            client=self.client,
            sink=self.sink,
            rtype=rtype,
            informer_settings=self.informer_settings,
            settings=self.pipeline_settings,
            status=status,
            budget=self.budget,
        )
        task = asyncio.create_task(pipeline.run(checkpoint=checkpoint), name=f"sync {rtype.key}")
        task.add_done_callback(_log_crash)
        self._running[rtype.key] = _Running(rtype=rtype, task=task, status=status, pipeline=pipeline)
        logger.info("syncing resource type", extra={"resource": rtype.key, "resume": checkpoint is not None})

    async def _stop_one(self, key: str) -> None:
        run = self._running.pop(key)
        await stop_tasks([run.task], timeout=STOP_TIMEOUT_S, log=logger)

    async def drain(self, *, timeout: float) -> None:  # noqa: ASYNC109  (running out is no error)
        """Stop listing and watching, and wait up to ``timeout`` seconds for every pipeline to
        deliver what it holds; then cancel the runner (``stop``) as usual."""
        self.draining = True
        runs = list(self._running.values())
        await asyncio.gather(*(run.pipeline.drain() for run in runs))
        pending = [run.task for run in runs if not run.task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            if late:
                logger.warning("shutdown: some types still had data to deliver",
                               extra={"resources": sorted(t.get_name() for t in late)})

    async def stop(self) -> None:
        """Cancel every pipeline and wait for them to finish."""
        runs = list(self._running.values())
        self._running.clear()
        await stop_tasks([run.task for run in runs], timeout=STOP_TIMEOUT_S, log=logger)


def _with_selection(settings: InformerSettings, selection: Selection) -> InformerSettings:
    return replace(
        settings,
        keep_secret_data=selection.keep_secret_data,
        namespaces_include=selection.namespaces_include,
        namespace_excluded=selection.namespace_excluded,
    )


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("pipeline crashed", exc_info=task.exception(), extra={"task": task.get_name()})
