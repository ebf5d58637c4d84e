"""Datasets, training, evaluation and adapter export (installed as `selftune.adaptation`).

Runs in `selftune adapt`, its own process; the server never imports it.
"""
