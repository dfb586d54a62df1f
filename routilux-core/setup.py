"""Build of the optional compiled modules (everything else is in pyproject.toml): the tracking
recorder (``routilux.tracking._crec``) and the per-routine counters (``routilux._cstats``).

``optional=True``: where an extension cannot be built (no C compiler, an unusual platform)
the install still succeeds and Routilux uses the pure-Python twin, which does the same more
slowly (docs/installation.md, docs/tracking.md "Overhead").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "routilux.tracking._crec",
            ["src/routilux/tracking/_crec.c"],
            optional=True,
        ),
        Extension("routilux._cstats", ["src/routilux/_cstats.c"], optional=True),
    ]
)
