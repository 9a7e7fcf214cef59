"""The replayed image, built once per session for every test that runs it."""

from __future__ import annotations

import pytest

from tests.image._replay import Replay, build_replay, missing_pieces


@pytest.fixture(scope="session")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    if reason := missing_pieces():
        pytest.skip(reason)
    return build_replay(tmp_path_factory.mktemp("image"))
