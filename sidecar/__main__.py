"""``python -m sidecar``: the daemon on stdin/stdout. The process started this way is
the front (``sidecar.front``); it starts the engine, the same command with
``--engine-for <front pid>``, which runs ``sidecar.app``."""

from __future__ import annotations

import logging
import os
import sys

import anyio

from sidecar.config import Settings, settings_from_args
from sidecar.logs import setup_logging


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    settings = settings_from_args(arguments)
    code = 0
    try:
        code = (
            run_engine(settings)
            if settings.front_pid is not None
            else run_front(settings, arguments)
        )
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


def run_front(settings: Settings, arguments: list[str]) -> int:
    from sidecar.front import Front, start_engine

    setup_logging(None, settings.log_level)  # stderr only: the engine owns the log file
    engine = start_engine(arguments)  # before any thread: see start_engine
    return anyio.run(Front(settings, engine).run)


def run_engine(settings: Settings) -> int:
    from sidecar.app import run
    from sidecar.priority import run_in_background

    run_in_background()  # before any thread, so that every thread inherits it
    anyio.run(run, settings)
    return 0


if __name__ == "__main__":
    main()
