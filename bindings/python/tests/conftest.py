import os
import pathlib

import pytest


@pytest.fixture
def scratch():
    """The folder shared with the C reference program and the other bindings
    (set by ctest); tests that need its files are skipped without it."""
    path = os.environ.get("FLOWLIB_BINDINGS_SCRATCH")
    if not path:
        pytest.skip("FLOWLIB_BINDINGS_SCRATCH not set (run through ctest)")
    return pathlib.Path(path)
