"""The progress of a ``mesh run`` as its steps report it: each step says when it starts and what it did when it
ends, to the listener ``mesh run`` registered for its Dagster run id (mesh_assets.orchestration.runner). A run
without a listener (launched by the daemon or the UI) reports to nobody.

``mesh run`` executes its steps in its own process (Dagster's in-process executor), so the steps reach the
listener directly: the run's progress costs no read of the Dagster instance.

An interrupt (SIGINT, SIGTERM) reaches the step running at that moment, which Dagster fails; the listener then
asks every later step of the run to stop (:func:`run_interrupted`), so the run ends at once, failed, and Dagster
records it so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from mesh_assets.engine.outcomes import CheckOutcome


@dataclass(frozen=True)
class StepEnd:
    """What a step did: ``asset``, its table's asset key (``domain/layer/table``); ``published`` (False when it
    failed or a blocking check failed); the rows it published by asset key (a bronze table's ``__rejects`` asset
    too) and the table's check outcomes, in the order it evaluated them (empty when it failed before its
    audit); ``interrupted``: it was stopped by an interrupt."""

    asset: str
    published: bool
    rows: dict[str, int | None] = field(default_factory=dict)
    outcomes: list[CheckOutcome] = field(default_factory=list)
    interrupted: bool = False


class StepListener(Protocol):
    """Receives the reports of a run's steps, keyed by step (the asset's node name, ``domain__layer__table``);
    ``interrupted`` once a step ended by an interrupt."""

    interrupted: bool

    def started(self, step: str) -> None: ...

    def ended(self, step: str, end: StepEnd) -> None: ...


_listeners: dict[str, StepListener] = {}


@contextmanager
def listening(run_id: str, listener: StepListener) -> Iterator[None]:
    """Within the block, the steps of the run ``run_id`` report to ``listener``."""
    _listeners[run_id] = listener
    try:
        yield
    finally:
        _listeners.pop(run_id, None)


def step_started(run_id: str, step: str) -> None:
    """Report that ``step`` of the run ``run_id`` started (an attempt: a retried step starts again)."""
    listener = _listeners.get(run_id)
    if listener is not None:
        listener.started(step)


def step_ended(run_id: str, step: str, end: StepEnd) -> None:
    """Report what ``step`` of the run ``run_id`` did."""
    listener = _listeners.get(run_id)
    if listener is not None:
        listener.ended(step, end)


def run_interrupted(run_id: str) -> bool:
    """A step of the run ``run_id`` was interrupted: the later ones must not run."""
    listener = _listeners.get(run_id)
    return listener is not None and listener.interrupted
