"""`python -m bench [--quick] [--out docs/BENCHMARKS.md]`: see bench/run.py."""

from bench.run import main

main()
