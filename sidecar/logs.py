"""Logs go to stderr and a rotating file under the home; never to stdout."""

from __future__ import annotations

import io
import logging
import logging.handlers
import sys
from pathlib import Path

from sidecar.redact import redact_text
from sidecar.store.homefs import HomeFS
from sidecar.store.layout import HomeLayout

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Every line, traceback included, with URL credentials and query values masked:
    no logger anywhere (ours, httpx's, urllib3's) can put a secret in a log."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def setup_logging(layout: HomeLayout | None, level: str) -> None:
    """To stderr, and to a rotating file under the home unless ``layout`` is None."""
    root = logging.getLogger()
    root.setLevel(level)
    for existing in list(root.handlers):
        root.removeHandler(existing)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(RedactingFormatter(FORMAT))
    root.addHandler(stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if layout is None:
        return
    try:
        problem = layout.ensure_folder(layout.logs)
        if problem is not None:
            raise problem
        file_handler = _HomeLogHandler(layout.fs, layout.logs / "sidecar.log")
    except (OSError, ValueError) as exc:
        root.warning("no log file: %s", exc)
    else:
        file_handler.setFormatter(RedactingFormatter(FORMAT))
        root.addHandler(file_handler)


class _HomeLogHandler(logging.handlers.RotatingFileHandler):
    """Opens its file through HomeFS: a link planted as ``logs/sidecar.log`` (or as a
    rotated name, which is renamed, never followed) cannot send the log elsewhere."""

    def __init__(self, fs: HomeFS, path: Path) -> None:
        self._fs = fs
        super().__init__(str(path), maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        path = Path(self.baseFilename)
        self._fs.drop_link(path)
        binary = self._fs.open_file(path, "ab")
        return io.TextIOWrapper(binary, encoding="utf-8", errors="backslashreplace")
