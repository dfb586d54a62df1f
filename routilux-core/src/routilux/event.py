"""Output events: named outputs of a routine that connections route to slots."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .routine import Routine

__all__ = ["Event"]


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.define(eq=False, kw_only=True)
class Event:
    """A named output of a routine.

    ``output_params`` documents the keyword arguments an ``emit`` of this event carries; it is
    descriptive (shown by validation, graphs and the API), not enforced per message.
    """

    name: str
    output_params: tuple[str, ...] = attrs.field(default=(), converter=_names)
    routine: Routine | None = attrs.field(default=None, repr=False)
