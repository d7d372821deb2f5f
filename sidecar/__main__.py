"""``python -m sidecar``: the daemon on stdin/stdout (``sidecar.app``). It owns every
piece of state and answers every method; file bodies move in its transfer worker, a
child process at background priority (``sidecar.transfer.worker``)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys

import anyio

from sidecar.config import settings_from_args

BAD_OPTION_EXIT = 2


def main(argv: list[str] | None = None) -> None:
    # We use no pydantic plugins; looking for them scans every installed package's
    # metadata (tens of milliseconds) when the first model is used: the first answer.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    arguments = sys.argv[1:] if argv is None else argv
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            settings = settings_from_args(arguments)
    except SystemExit as exc:
        sys.stderr.write(usage.getvalue())
        if exc.code in (0, None) or sys.stdin is None or sys.stdin.isatty():
            raise  # --help, or a person at a terminal: the usage message is the answer
        os._exit(_answer_bad_option(usage.getvalue()))
    sys.stderr.write(usage.getvalue())
    code = 0
    try:
        from sidecar.rpc.dispatch import defer_package_init

        defer_package_init()  # completed after the first answers (Manager.complete)
        from sidecar.app import run

        code = anyio.run(run, settings)
    except KeyboardInterrupt:
        code = 130
    except Exception:
        logging.getLogger("sidecar").exception("sidecar crashed")
        code = 1
    logging.shutdown()
    sys.stderr.flush()
    # The stdin reader may still be blocked in a worker thread that no platform lets us
    # interrupt; everything is saved and released by now, so leave without joining it.
    os._exit(code)


def _answer_bad_option(usage: str) -> int:
    """A program (the app, the CLI) started us with a bad option or setting: answer its
    requests with the reason rather than leave it a dead pipe."""
    from sidecar.app import serve_lines
    from sidecar.engine.failed import serve_failed
    from sidecar.errors import InvalidOption
    from sidecar.rpc.stdio import LineWriter, StdinReader, claim_stdout

    lines = [line for line in usage.strip().splitlines() if line.strip()]
    reason = lines[-1].split(": error: ", 1)[-1] if lines else "invalid command line"
    error = InvalidOption(f"the sidecar cannot start: {reason}", reason=reason)
    writer = LineWriter(claim_stdout())
    reader = StdinReader(sys.stdin.fileno(), 16 * 1024 * 1024)
    anyio.run(serve_lines, reader, lambda ls: serve_failed(error, writer, ls))
    logging.shutdown()
    sys.stderr.flush()
    return BAD_OPTION_EXIT


if __name__ == "__main__":
    main()
