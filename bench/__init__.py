"""Benchmarks that report ratios measured in one run (``make bench``; CI runs ``--smoke``)."""
