"""Control-flow routines: join inputs, batch, debounce and route payloads.

Aggregator, Batcher and Debouncer buffer payloads, always in their bounded slot queues (config
``max_pending`` and ``overflow``, applied to the slots when set), and decide when to run through
the timer-driven policies of :mod:`routilux_builtins.policies`; nothing is kept on the routine
object, so every job has its own buffers and timers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from routilux.slot import DEFAULT_MAX_QUEUE_LENGTH

from ._base import BuiltinRoutine, build_test
from .policies import AggregatePolicy, DebouncePolicy, SizeOrTimePolicy

__all__ = ["Aggregator", "Batcher", "ConditionalRouter", "Debouncer"]

Payload = dict[str, Any]
SlotData = dict[str, list[Payload]]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Buffered(BuiltinRoutine, register=False):
    """A builtin whose slot queues are its buffer: ``max_pending`` and ``overflow`` apply to
    every slot."""

    type_name = "builtins._Buffered"

    def _check_buffer(self, config: Mapping[str, Any]) -> None:
        self._check_int(config, "max_pending")
        self._check_overflow(config)

    def _apply_buffer(self, config: Mapping[str, Any]) -> None:
        for name in self.slots:
            self._bound_slot(name, config["max_pending"], config["overflow"])


class Aggregator(_Buffered):
    """Join several inputs: wait for all of them, any, or ``n`` of ``m``, with a timeout.

    One slot per name in ``inputs``; connect each upstream event to its own slot. A round
    starts with the first payload on any input and ends when enough inputs have data, when
    ``timeout`` passes, or when the job drains; it consumes one payload from every input that
    has one (later payloads wait for the next round).

    Slots: the ``inputs`` names. Events: ``output`` with ``values`` (``{input: payload}`` of
    what arrived), ``arrived`` (input names), ``timed_out`` (inputs that had not arrived when
    the round ended early; empty when complete), ``reason`` (``"complete"``, ``"timeout"``
    or ``"drained"``).

    Config:
        inputs (required): list of input (slot) names; can be extended later, not shrunk.
        mode ("all"): ``"all"``, ``"any"`` or ``"n_of_m"``.
        n (None): inputs needed with ``"n_of_m"``.
        round_timeout (None): seconds a round may wait for its inputs (None: until the job
            drains). Named so as not to clash with the core's per-activation ``timeout``.
        max_pending (10000), overflow ("block"): bound and overflow of every input queue.
    """

    type_name = "builtins.Aggregator"
    CONFIG_DEFAULTS = MappingProxyType({
        "inputs": None, "mode": "all", "n": None, "round_timeout": None,
        "max_pending": DEFAULT_MAX_QUEUE_LENGTH, "overflow": "block",
    })
    REQUIRED = frozenset({"inputs"})

    def _declare(self) -> None:
        self.add_event("output", ["values", "arrived", "timed_out", "reason"])
        self._set_logic_checked(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_buffer(config)
        self._check_choice(config, "mode", AggregatePolicy.MODES)
        self._check_seconds(config, "round_timeout", optional=True)
        inputs = config["inputs"]
        if inputs is not None:
            if (not isinstance(inputs, list | tuple) or not inputs
                    or not all(isinstance(i, str) and _NAME.match(i) for i in inputs)):
                self._bad("inputs", "must be a non-empty list of input names (letters, digits, "
                          f"underscores), got {inputs!r}")
            if len(set(inputs)) != len(inputs):
                self._bad("inputs", f"lists a name twice: {inputs!r}")
            removed = [s for s in self.slots if s not in inputs]
            if removed:
                self._bad("inputs", f"drops input(s) {', '.join(removed)} that this routine "
                          "already has; inputs can only be added; create a new Aggregator")
        if config["mode"] == "n_of_m":
            self._check_int(config, "n")
            if inputs is not None and config["n"] > len(inputs):
                self._bad("n", f"is {config['n']} but there are only {len(inputs)} inputs")
        elif config["n"] is not None:
            self._bad("n", f"applies only to mode 'n_of_m' (mode is {config['mode']!r}); "
                      "remove it")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        for name in config["inputs"] or ():
            if name not in self.slots:
                self.add_slot(name)
        self._apply_buffer(config)
        self.set_activation_policy(
            AggregatePolicy(config["mode"], config["n"], config["round_timeout"])
        )

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        values = {name: payloads[0] for name, payloads in slot_data.items() if payloads}
        reason = policy_message.get("reason", "complete")
        missing = [] if reason == "complete" else [i for i in self.slots if i not in values]
        self.emit("output", values=values, arrived=list(values), timed_out=missing,
                  reason=reason)


class Batcher(_Buffered):
    """Group payloads into batches of ``size``, or fewer after ``max_wait`` seconds.

    A batch is emitted when ``size`` payloads are queued or ``max_wait`` seconds after the
    batch's first payload arrived, whichever comes first (a timer, not the next arrival,
    delivers the time-based batch); when the job drains, what is left goes out as a last
    batch.

    Slots: ``input``. Events: ``batch`` with ``items`` (the payloads, oldest first), ``size``
    and ``reason`` (``"size"``, ``"time"`` or ``"drained"``).

    Config:
        size (100): items per full batch.
        max_wait (None): seconds before a partial batch goes out (None: only size and drain).
        max_pending (10000), overflow ("block"): bound of the queue that holds the batch
            being filled (at least ``size``).
    """

    type_name = "builtins.Batcher"
    CONFIG_DEFAULTS = MappingProxyType({
        "size": 100, "max_wait": None, "max_pending": DEFAULT_MAX_QUEUE_LENGTH,
        "overflow": "block",
    })

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("batch", ["items", "size", "reason"])
        self.set_logic(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_buffer(config)
        self._check_int(config, "size")
        self._check_seconds(config, "max_wait", optional=True)
        if config["max_pending"] < config["size"]:
            self._bad("max_pending", f"({config['max_pending']}) must be at least size "
                      f"({config['size']}), or a full batch could never queue up")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        self._apply_buffer(config)
        self.set_activation_policy(SizeOrTimePolicy(config["size"], config["max_wait"]))

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        items = slot_data.get("input", [])
        if items:
            reason = policy_message.get("reason", "size")
            self.emit("batch", items=items, size=len(items), reason=reason)


class Debouncer(_Buffered):
    """Pass on only the latest payload, once ``wait`` seconds pass with no newer one.

    Payloads superseded by a newer one are discarded on purpose and counted (the emitted
    ``superseded`` count, and the routine state's ``superseded`` total), so at most one payload
    per job waits here. ``max_wait`` caps how long a constant stream can delay the output.

    Slots: ``input``. Events: ``output`` (the latest payload, unchanged, plus
    ``superseded_key`` if set).

    Config:
        wait (1.0): seconds of quiet before the latest payload goes out.
        max_wait (None): latest delivery, in seconds after the first held payload.
        superseded_key (None): add the number of payloads this one superseded under this key.
        max_pending (10000), overflow ("block"): bound of the input queue between
            evaluations (superseded payloads are removed at each evaluation).
    """

    type_name = "builtins.Debouncer"
    CONFIG_DEFAULTS = MappingProxyType({
        "wait": 1.0, "max_wait": None, "superseded_key": None,
        "max_pending": DEFAULT_MAX_QUEUE_LENGTH, "overflow": "block",
    })

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("output")
        self.set_logic(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_buffer(config)
        self._check_seconds(config, "wait")
        self._check_seconds(config, "max_wait", optional=True)
        self._check_str(config, "superseded_key", optional=True)
        if config["max_wait"] is not None and config["max_wait"] < config["wait"]:
            self._bad("max_wait", f"({config['max_wait']}) must be at least wait "
                      f"({config['wait']})")

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        self._apply_buffer(config)
        self.set_activation_policy(DebouncePolicy(config["wait"], config["max_wait"]))

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        superseded = policy_message.get("superseded", 0)
        if superseded:
            from routilux import current_activation

            info = current_activation()
            if info is not None:
                total = (job_state.get_routine_state(info.routine_id, {}) or {}).get(
                    "superseded", 0)
                job_state.update_routine_state(info.routine_id,
                                               {"superseded": total + superseded})
        key = self.get_config("superseded_key")
        for payload in slot_data.get("input", []):
            if key:
                self.emit("output", **{**payload, key: superseded})
            else:
                self.emit("output", **payload)


class ConditionalRouter(BuiltinRoutine):
    """Send each payload to the first route whose condition matches (or to every matching
    route), else to ``default``.

    Each route is an event of the same name; connect it like any event. Conditions are JMESPath
    expressions (``when``, data, not code) or names of functions registered with
    :func:`~routilux_builtins.register_condition` (``condition``); user strings are never
    evaluated as Python.

    Slots: ``input``. Events: one per route name, and ``default`` (payloads are forwarded
    unchanged).

    Config:
        routes (required): ordered list of ``{"name": ..., "when": "expr"}`` or
            ``{"name": ..., "condition": "registered_name"}``; routes can be added later,
            not removed.
        match ("first"): ``"first"`` matching route only, or ``"all"`` matching routes.
    """

    type_name = "builtins.ConditionalRouter"
    CONFIG_DEFAULTS = MappingProxyType({"routes": None, "match": "first"})
    REQUIRED = frozenset({"routes"})

    def _declare(self) -> None:
        self.add_slot("input")
        self.add_event("default")
        self._routes: tuple[tuple[str, Callable[[Payload], bool]], ...] = ()
        self._set_logic_checked(self._run)

    def _check_config(self, config: Mapping[str, Any]) -> None:
        self._check_choice(config, "match", ("first", "all"))
        if config["routes"] is not None:
            names = [name for name, _ in self._build_routes(config["routes"])]
            removed = [e for e in self.events if e != "default" and e not in names]
            if removed:
                self._bad("routes", f"drops route(s) {', '.join(removed)} that this routine "
                          "already has; routes can only be added; create a new "
                          "ConditionalRouter")

    def _build_routes(self, routes: Any) -> list[tuple[str, Callable[[Payload], bool]]]:
        if not isinstance(routes, list | tuple) or not routes:
            self._bad("routes", "must be a non-empty list of {'name': ..., 'when': ...} "
                      f"routes, got {routes!r:.80}")
        built = []
        seen: set[str] = set()
        for i, route in enumerate(routes):
            key = f"routes[{i}]"
            if not isinstance(route, Mapping):
                self._bad(key, f"must be a mapping with 'name' and 'when' or 'condition', got "
                          f"{route!r:.60}")
            extra = set(route) - {"name", "when", "condition"}
            if extra:
                self._bad(key, f"has unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                          "use 'name' and 'when' or 'condition'")
            name = route.get("name")
            if not isinstance(name, str) or not _NAME.match(name) or name == "default":
                self._bad(key, f"'name' must be an identifier other than 'default', got {name!r}")
            if name in seen:
                self._bad(key, f"repeats route name {name!r}")
            seen.add(name)
            built.append((name, build_test(self, key, route.get("when"), route.get("condition"))))
        return built

    def _apply_config(self, config: Mapping[str, Any]) -> None:
        if config["routes"] is None:
            return
        routes = self._build_routes(config["routes"])
        for name, _ in routes:
            if name not in self.events:
                self.add_event(name)
        self._routes = tuple(routes)

    def _run(self, slot_data: SlotData, policy_message: Any, job_state: Any) -> None:
        routes = self._routes
        first = self.get_config("match") == "first"
        for payload in slot_data["input"]:
            matched = False
            for name, test in routes:
                if test(payload):
                    self.emit(name, **payload)
                    matched = True
                    if first:
                        break
            if not matched:
                self.emit("default", **payload)
