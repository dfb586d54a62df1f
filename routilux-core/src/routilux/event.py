"""Output events: named outputs of a routine that connections route to slots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .routine import Routine

__all__ = ["Event"]


@attrs.define(eq=False, kw_only=True)
class Event:
    """A named output of a routine.

    ``output_params`` documents the keyword arguments an ``emit`` of this event carries; it is
    descriptive (shown by validation, graphs and the API), not enforced per message.
    """

    name: str
    output_params: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    routine: Routine | None = attrs.field(default=None, repr=False)
