"""Prometheus metrics from engine events, served at ``GET /metrics``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from engine.events import Event, EventBus, RunFinished, RunStarted, StepFinished

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_started = Counter(
            "ansflow_runs_started", "Runs started", ["pipeline"], registry=self.registry
        )
        self.runs_finished = Counter(
            "ansflow_runs_finished",
            "Runs ended, by status",
            ["pipeline", "status"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "ansflow_run_duration_seconds",
            "Run durations",
            ["pipeline"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.steps_finished = Counter(
            "ansflow_steps_finished",
            "Steps ended, by kind and status",
            ["kind", "status"],
            registry=self.registry,
        )

        self.rounds_lost = Counter(
            "ansflow_rounds_lost",
            "Rounds whose compare-and-set lost (the rows moved meanwhile); planned again",
            registry=self.registry,
        )

    def on_event(self, event: Event) -> None:
        run = event.run
        if isinstance(event, RunStarted):
            self.runs_started.labels(run.pipeline).inc()
        elif isinstance(event, RunFinished):
            self.runs_finished.labels(run.pipeline, run.status.value).inc()
            if run.duration is not None:
                self.run_seconds.labels(run.pipeline).observe(run.duration)
        elif isinstance(event, StepFinished) and event.step is not None:
            self.steps_finished.labels(event.step.kind, event.step.status.value).inc()

    async def handler(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_metrics(app: web.Application, bus: EventBus) -> Metrics:
    metrics = Metrics()
    bus.subscribe(metrics.on_event)
    app.router.add_get("/metrics", metrics.handler)
    return metrics
