"""Settings shared by every test directory of the workspace.

Hypothesis's per-example deadline (200 ms by default) is a wall-clock timing assertion: on a
loaded 2-core CI machine an example that is correct can take longer, so the deadline is off.
Speed is measured in benchmarks/, never asserted in tests.
"""

from hypothesis import settings

settings.register_profile("routilux", deadline=None)
settings.load_profile("routilux")
