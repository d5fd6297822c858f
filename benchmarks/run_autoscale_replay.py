"""Autoscaler replay (held-out): `python benchmarks/run_autoscale_replay.py [--quick]`.

The code is the package benchmarks/autoscale_replay/; this script is its entry for `make bench`.
"""

from autoscale_replay.__main__ import main

if __name__ == "__main__":
    main()
