"""selftune's language server and everything it runs in-process (installed as `selftune.server`)."""

__version__ = "0.1.0"
