"""The built-in tracking sinks: in memory (tests and the Python API) and JSON lines (files).

Sinks are attached to a runtime's :class:`~routilux.tracking.TrackingHub`
(``Runtime(tracking_sinks=[...])``, ``runtime.tracking.add_sink(...)``, or a plugin's
``routilux_tracking_sinks`` hook) and chosen by name through ``registry.tracking_sinks``:
``"memory"``, ``"jsonl"``, ``"otel"`` and ``"prometheus"``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._materialize import Materializer, decode
from ._wire import JobInfo
from ._wire import records as count_records
from .lineage import PayloadTrace, follow_payload
from .records import TrackingRecord

if TYPE_CHECKING:
    from ..registry import TypeRegistry
    from ._hub import TrackingHub

__all__ = ["InMemorySink", "JsonLinesSink", "build_sink", "read_jsonl"]


class InMemorySink:
    """Keeps the most recent ``capacity`` records in memory.

    Meant for tests and for answering questions from Python (``records``, ``dicts``,
    ``trace``). It is the cheapest sink: the hub hands it raw entries and records are built
    only when read, so attaching it costs the jobs little (docs/tracking.md, "Overhead").
    Reading flushes the hub first, so what a finished job produced is there.

    Args:
        capacity: records kept; the oldest are evicted beyond it (counted in ``evicted``).
    """

    name = "memory"

    def __init__(self, capacity: int = 100_000) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._lock = threading.Lock()
        # raw chunks not yet turned into records: (chunk, record count, the hub's name table)
        self._raw: deque[tuple[tuple[bytes, tuple[Any, ...]], int, Sequence[str]]] = deque()
        self._nraw = 0
        self._records: deque[TrackingRecord] = deque()
        self._infos: dict[int, JobInfo] = {}
        self._materializer = Materializer(self._infos)
        self._hub: TrackingHub | None = None
        self.received = 0
        self.evicted = 0

    def _bind_hub(self, hub: TrackingHub) -> None:
        self._hub = hub

    def _accept_raw(
        self, chunk: tuple[bytes, tuple[Any, ...]], infos: Sequence[tuple[int, JobInfo]] = (),
        records: int | None = None, names: Sequence[str] = (),
    ) -> None:
        n = count_records(chunk) if records is None else records
        with self._lock:
            if infos:
                self._infos.update(infos)
                while len(self._infos) > self.capacity:  # bounded like the records
                    self._infos.pop(next(iter(self._infos)))
            self._raw.append((chunk, n, names))
            self._nraw += n
            self.received += n
            self._evict_locked()

    def write(self, records: Sequence[TrackingRecord]) -> None:
        """Keep ``records`` (for use without a hub, or as a plain sink of another hub)."""
        with self._lock:
            self._records.extend(records)
            self.received += len(records)
            self._evict_locked()

    def _evict_locked(self) -> None:
        # Whole raw chunks go while what stays still holds ``capacity`` records (records are
        # built only when read); built records go one by one.
        extra = self._nraw + len(self._records) - self.capacity
        while extra > 0 and self._records:
            self._records.popleft()
            extra -= 1
            self.evicted += 1
        while self._raw and extra >= self._raw[0][1]:
            n = self._raw.popleft()[1]
            self._nraw -= n
            extra -= n
            self.evicted += n

    def records(
        self, job_id: str | None = None, kind: str | None = None, *, flush: bool = True
    ) -> list[TrackingRecord]:
        """The records kept, oldest first, optionally only of ``job_id`` and/or ``kind``
        (``"activation.failed"``, or a prefix such as ``"activation."``)."""
        if flush and self._hub is not None:
            self._hub.flush()
        with self._lock:
            while self._raw:
                chunk, n, names = self._raw.popleft()
                self._nraw -= n
                self._records.extend(
                    self._materializer.build(decode(chunk, self._infos, names)))
            while len(self._records) > self.capacity:
                self._records.popleft()
                self.evicted += 1
            found = list(self._records)
        if job_id is not None:
            found = [r for r in found if r.job_id == job_id]
        if kind is not None:
            if kind.endswith("."):
                found = [r for r in found if r.kind.startswith(kind)]
            else:
                found = [r for r in found if r.kind == kind]
        return found

    def dicts(
        self, job_id: str | None = None, kind: str | None = None, *, timing: bool = False
    ) -> list[dict[str, Any]]:
        """``records(...)`` as JSON dicts, by default without clock-dependent fields (``ts``,
        ``duration``, ``delay``), so a deterministic job gives equal lists run after run."""
        return [r.to_dict(timing=timing) for r in self.records(job_id, kind)]

    def trace(self, job_id: str, payload: int) -> PayloadTrace:
        """Where payload ``payload`` of ``job_id`` came from and went (see
        :func:`~routilux.tracking.follow_payload`)."""
        return follow_payload(self.records(job_id), job_id, payload)

    def clear(self) -> None:
        """Forget every record kept."""
        with self._lock:
            self._raw.clear()
            self._nraw = 0
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return min(self.capacity, self._nraw + len(self._records))

    def __repr__(self) -> str:
        return f"<InMemorySink {len(self)}/{self.capacity} records>"


class JsonLinesSink:
    """Appends every record as one JSON object per line to ``path``, rotating by size.

    When the file would grow past ``max_bytes`` it is renamed ``path.1`` (``path.1`` becomes
    ``path.2``, ... up to ``backups`` files; the oldest is deleted) and a new file is started.
    Lines are flushed after every batch the hub delivers. Read them back with
    :func:`read_jsonl`.

    Args:
        path: the file to write (created with its directory; appended to if it exists).
        max_bytes: rotate before the file exceeds this size (0: never rotate).
        backups: rotated files kept.
        timing: include ``ts``/``duration``/``delay`` (False gives reproducible files).
    """

    name = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 3,
        timing: bool = True,
    ) -> None:
        if max_bytes < 0 or backups < 0:
            raise ConfigurationError("max_bytes and backups must be >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.timing = timing
        self._file: IO[str] | None = None
        self._size = 0
        self._lock = threading.Lock()

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self._file.tell()
        return self._file

    def write(self, records: Sequence[TrackingRecord]) -> None:
        timing = self.timing
        with self._lock:
            f = self._open()
            for rec in records:
                line = json.dumps(rec.to_dict(timing=timing), separators=(",", ":")) + "\n"
                n = len(line.encode("utf-8"))
                if self.max_bytes and self._size and self._size + n > self.max_bytes:
                    f = self._rotate()
                f.write(line)
                self._size += n
            f.flush()

    def _rotate(self) -> IO[str]:
        assert self._file is not None
        self._file.close()
        self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self._backup(self.backups)
            oldest.unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                src = self._backup(i)
                if src.exists():
                    src.replace(self._backup(i + 1))
            self.path.replace(self._backup(1))
        return self._open()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __repr__(self) -> str:
        return f"<JsonLinesSink {str(self.path)!r}>"


def read_jsonl(
    path: str | os.PathLike[str], *, backups: bool = True
) -> Iterator[dict[str, Any]]:
    """The records written by a :class:`JsonLinesSink`, oldest first, as dicts.

    With ``backups`` the rotated files (``path.N`` ... ``path.1``) are read first. Feed the
    result to :func:`~routilux.tracking.follow_payload` or
    :func:`~routilux.tracking.summarize` to answer questions about a job.
    """
    base = Path(path)
    files: list[Path] = []
    if backups:
        numbered = []
        for p in base.parent.glob(f"{base.name}.*"):
            suffix = p.name[len(base.name) + 1 :]
            if suffix.isdigit():
                numbered.append((int(suffix), p))
        files.extend(p for _, p in sorted(numbered, reverse=True))
    if base.exists():
        files.append(base)
    for p in files:
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield json.loads(line)


def build_sink(spec: Any, registry: TypeRegistry | None = None) -> Any:
    """A sink from ``spec``: a sink object (returned as is), a registered name (``"memory"``),
    or ``(name, {options})`` / ``{"name": ..., **options}``, built by the factory registered
    under that name in ``registry.tracking_sinks``.

    Raises:
        UnknownTypeError: no sink factory has that name.
        ConfigurationError: the factory refused the options.
    """
    name: str | None = None
    options: Mapping[str, Any] = {}
    if isinstance(spec, str):
        name = spec
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        name, options = spec[0], dict(spec[1] or {})
    elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        name = spec["name"]
        options = {k: v for k, v in spec.items() if k != "name"}
    if name is None:
        return spec
    if registry is None:
        from ..registry import type_registry

        registry = type_registry
    factory = registry.tracking_sinks.get(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"tracking sink {name!r}: {exc}") from None

