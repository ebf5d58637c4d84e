"""Test feedback: the project's tests on save, failures as diagnostics, fixes as training data.

`on_save.TestFeedback` runs one workspace's tests when files are saved; the
rest are its parts: which tests are related to a file (related.py), the
pytest subprocess and its plugin (runner.py, plugin/), failures as problems
(diagnostics.py), the workspace state a run saw (state.py), fail→pass pairs
(pairs.py), and whether tests may run at all (config.py). Nothing here knows
about LSP: the server passes in how to publish, show progress and say things.
"""

from .on_save import TestFeedback

__all__ = ["TestFeedback"]
