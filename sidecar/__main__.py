"""``python -m sidecar``: the daemon on stdin/stdout (``sidecar.app``). It owns every
piece of state and answers every method; file bodies move in its transfer worker, a
child process at background priority (``sidecar.transfer.worker``)."""

from __future__ import annotations

import logging
import os
import sys

import anyio

from sidecar.config import settings_from_args


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    settings = settings_from_args(arguments)
    code = 0
    try:
        from sidecar.app import run

        anyio.run(run, settings)
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


if __name__ == "__main__":
    main()
