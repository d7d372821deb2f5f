from __future__ import annotations

import pytest

from sidecar.config import settings_from_args


@pytest.mark.parametrize("given", ["debug", "DEBUG", "Debug"])
def test_log_level_is_case_insensitive(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    assert settings_from_args(["--log-level", given]).log_level == "DEBUG"
    monkeypatch.setenv("MODEL_MANAGER_LOG_LEVEL", given)
    assert settings_from_args([]).log_level == "DEBUG"


def test_an_unknown_log_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    with pytest.raises(SystemExit):
        settings_from_args(["--log-level", "chatty"])
