from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

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


# --- the bearer token -------------------------------------------------------------------

TOKEN_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
AROUND = st.text(alphabet=" \t\r\n\x0b\x0c", max_size=4)


@settings(max_examples=60, deadline=None)
@given(token=st.text(TOKEN_CHARS, min_size=1, max_size=60), before=AROUND, after=AROUND)
@example(token="s3cret-token", before="", after="\n")
@example(token="s3cret-token", before="", after="\r\n")
@example(token="s3cret-token", before=" ", after=" ")
def test_whitespace_around_the_token_is_stripped(token: str, before: str, after: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
        patch.setenv("MODEL_MANAGER_TOKEN", before + token + after)
        assert settings_from_args([]).token == token


@settings(max_examples=60, deadline=None)
@given(
    head=st.text(TOKEN_CHARS, min_size=1, max_size=30),
    bad=st.characters(min_codepoint=1, max_codepoint=0x1F)
    | st.sampled_from(["\x7f", "é", "\u2028", "中"]),
    tail=st.text(TOKEN_CHARS, min_size=1, max_size=30),
)
@example(head="s3cret", bad="\n", tail="token")
@example(head="s3cret", bad="\x1b", tail="token")
def test_a_control_character_inside_the_token_stops_the_start_without_showing_it(
    head: str, bad: str, tail: str
) -> None:
    token = "S3KRIT" + head + bad + tail + "T4IL"  # markers no message has by chance
    error = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(error):
        patch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
        patch.setenv("MODEL_MANAGER_TOKEN", token)
        with pytest.raises(SystemExit) as exited:
            settings_from_args([])
    assert exited.value.code == 2
    message = error.getvalue()
    assert "MODEL_MANAGER_TOKEN" in message
    assert f"position {len(head) + 7}" in message
    assert "S3KRIT" not in message and "T4IL" not in message, message


def test_an_empty_or_blank_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    for blank in ("", " ", "\r\n"):
        monkeypatch.setenv("MODEL_MANAGER_TOKEN", blank)
        assert settings_from_args([]).token is None


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-bytes-per-second", "1" + "0" * 400),
        ("--max-bytes-per-second", "-5"),
        ("--request-deadline", "0"),
        ("--request-deadline", "nan"),
        ("--request-deadline", "inf"),
    ],
)
def test_limits_out_of_range_are_usage_errors(
    flag: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    with pytest.raises(SystemExit):
        settings_from_args([flag, value])


def test_limits_have_their_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    monkeypatch.delenv("MODEL_MANAGER_REQUEST_DEADLINE", raising=False)
    settings = settings_from_args([])
    assert (settings.request_deadline, settings.max_dependency_depth) == (60.0, 16)
    assert settings.max_dependencies == 64
    monkeypatch.setenv("MODEL_MANAGER_REQUEST_DEADLINE", "2.5")
    assert settings_from_args([]).request_deadline == 2.5


# --- one option table for flags, environment, Settings and setLimits ---------------------


def test_every_option_has_its_flag_and_default_in_settings() -> None:
    from sidecar.config import OPTIONS, Settings, build_parser

    help_text = build_parser().format_help()
    plain = Settings(home=Path("/h"))
    for option in OPTIONS:
        assert option.flag in help_text, option.flag
        if option.name == "lock_timeout":
            assert plain.lock_timeout_ms == option.default * 1000
        elif option.name == "max_bytes_per_second":
            assert plain.max_bytes_per_second is None and option.default == 0
        else:
            assert getattr(plain, option.name) == option.default, option.name
        parsed = settings_from_args(["--home", "/h"])
        if option.name not in ("lock_timeout", "max_bytes_per_second"):
            assert getattr(parsed, option.name) == option.default, option.name


@pytest.mark.parametrize("edge", ["low", "high"])
def test_options_accept_their_bounds_and_refuse_beyond(edge: str) -> None:
    from sidecar.config import OPTIONS

    for option in OPTIONS:
        bound = getattr(option, edge)
        assert option.parse(str(bound)) == bound
        beyond = bound - 1 if edge == "low" else bound + 1
        with pytest.raises(SystemExit):
            settings_from_args(["--home", "/h", option.flag, str(beyond)])


def test_set_limits_bounds_are_the_command_lines() -> None:
    from pydantic import ValidationError

    from sidecar.config import OPTION
    from sidecar.wire import SetLimitsParams

    for field, name in (
        ("maxBytesPerSecond", "max_bytes_per_second"),
        ("maxConcurrentTasks", "max_concurrent_tasks"),
        ("maxConnectionsPerFile", "max_connections_per_file"),
    ):
        option = OPTION[name]
        assert SetLimitsParams.model_validate({field: option.high})
        with pytest.raises(ValidationError):
            SetLimitsParams.model_validate({field: option.high + 1})
        with pytest.raises(ValidationError):
            SetLimitsParams.model_validate({field: option.low - 1})


def test_an_option_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_STALL_TIMEOUT", "7.5")
    assert settings_from_args(["--home", "/h"]).stall_timeout == 7.5
    monkeypatch.setenv("MODEL_MANAGER_STALL_TIMEOUT", "-1")
    with pytest.raises(SystemExit):
        settings_from_args(["--home", "/h"])
