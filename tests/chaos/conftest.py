"""The chaos suite's fixtures: what a scenario needs from the machine, or a loud failure
(never a skip: .ci/run provides all of it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import faketime_library
from tests.chaos.scenarios import MissingEnvironment, small_file_system


@pytest.fixture
def libfaketime() -> Path:
    library = faketime_library()
    if library is None:
        pytest.fail("libfaketime is missing: apt-get install faketime (.ci/run installs it)",
                    pytrace=False)
    return library


@pytest.fixture
def small_fs() -> Path:
    try:
        return small_file_system()
    except MissingEnvironment as e:
        pytest.fail(str(e), pytrace=False)
