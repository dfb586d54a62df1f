"""The package's public surface: ``__all__`` is complete and importable."""

from __future__ import annotations

import types

import routilux_server
from routilux_server import client


def test_all_names_import() -> None:
    for name in routilux_server.__all__:
        assert hasattr(routilux_server, name), name
    for name in client.__all__:
        assert hasattr(client, name), name


def test_every_public_name_is_in_all() -> None:
    public = {n for n, v in vars(routilux_server).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public <= set(routilux_server.__all__) | {"annotations"}


def test_importing_the_package_starts_nothing() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    import importlib

    importlib.reload(routilux_server)
    assert {t.name for t in threading.enumerate()} == before
