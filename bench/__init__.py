"""The benchmark suite of issue 7: ``python -m bench [SCENARIO...] [--quick] [--json FILE]``.

Every scenario starts what it needs (the emulator or a no-op server in a subprocess on
127.0.0.1, port 0), runs bulkops and what it is compared with as real processes, and returns
named figures; :mod:`bench.goals` holds the goal of each. A benchmark prints and records, it
asserts nothing; ``tests/bench`` only checks that the suite runs.
"""
