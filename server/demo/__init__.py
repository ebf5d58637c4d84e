"""`selftune demo`: the newcomer's tour, driving the real server over LSP on a sample project."""
