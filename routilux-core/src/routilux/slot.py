"""Input slots: named, bounded inputs of a routine (templates; queues live in each job)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .routine import Routine

__all__ = ["DEFAULT_MAX_QUEUE_LENGTH", "Overflow", "Slot"]

DEFAULT_MAX_QUEUE_LENGTH = 10_000
"""Default bound of every slot queue (per job)."""


class Overflow(enum.StrEnum):
    """What happens when a payload arrives at a full slot queue.

    BLOCK: the producer waits up to ``block_timeout`` seconds for room, then fails with
    ``QueueFullError``. FAIL: the producer fails at once with ``QueueFullError``.
    DROP_OLDEST: the oldest queued payload is discarded and the drop is counted in the job
    state (``JobState.dropped``); never a silent drop.
    """

    BLOCK = "block"
    FAIL = "fail"
    DROP_OLDEST = "drop_oldest"


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.define(eq=False, kw_only=True)
class Slot:
    """A named input of a routine.

    A slot is part of the routine *template*: it holds no data. Each job keeps its own bounded
    queue for every slot, so two executions of one flow never share payloads.
    """

    name: str
    routine: Routine | None = attrs.field(default=None, repr=False)
    max_queue_length: int = attrs.field(
        default=DEFAULT_MAX_QUEUE_LENGTH, validator=_positive_int
    )
    overflow: Overflow = attrs.field(default=Overflow.BLOCK, converter=Overflow)
    block_timeout: float = attrs.field(default=30.0, validator=_non_negative)
