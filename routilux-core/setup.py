"""Build of the optional compiled tracking recorder (everything else is in pyproject.toml).

``optional=True``: where the extension cannot be built (no C compiler, an unusual platform)
the install still succeeds and Routilux uses the pure-Python recorder, which queues the same
records more slowly (docs/tracking.md, "Overhead").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "routilux.tracking._crec",
            ["src/routilux/tracking/_crec.c"],
            optional=True,
        )
    ]
)
