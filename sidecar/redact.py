"""Secrets in URLs never leave the process: user info and query values are masked.

The one place that decides what of a URL may be shown: ``redact_url`` for a URL,
``redact_text`` for text that may hold URLs. Used by the log formatter (every log line),
ModelManagerError (every typed error), task snapshots (getTask, notifications), the
registry and metadata writers, tasks.json, and getInfo."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, MASK) for key, _ in pairs], safe="*") if pairs else MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# A URL inside free text (a log line, an exception's message): a scheme, then anything
# up to white space or a quote. And any "?k=v" / "&k=v" left without a scheme (urllib3
# logs "GET /x?token=... HTTP/1.1").
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s'"<>`]+""")
_QUERY_VALUE = re.compile(r"""([?&][^\s=&#'"<>`]*=)[^\s&#'"<>`]+""")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``: for log lines and
    error messages, where a URL may be anywhere (also inside an exception's repr)."""
    if "://" not in text and "=" not in text:
        return text  # the common case, cheaply
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
    return _QUERY_VALUE.sub(lambda match: match.group(1) + MASK, text)
