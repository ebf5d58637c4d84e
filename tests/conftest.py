"""For every test: the user's selftune data folder (the trust list) is a fresh temporary one.

Set before anything starts a server, so the servers the tests start inherit it, and no test reads or
changes the trust list of the person running them.
"""

import os
import tempfile

os.environ["SELFTUNE_DATA"] = tempfile.mkdtemp(prefix="selftune-data-")
