"""The engine's side of its link to the front (``sidecar.front``): ahead of each
message, the availability (what getModelPath answers) when it changed since the
last, so the front answers from state at least as new as anything the app has read."""

from __future__ import annotations

from typing import Any

import anyio

from sidecar.library import Library
from sidecar.rpc.messages import AVAILABILITY_NEWS, encode_message
from sidecar.rpc.stdio import LineWriter

# A change no message follows (a model another process installed) reaches the front
# this late at most.
NEWS_POLL = 0.25


class AvailabilityNews:
    def __init__(self, library: Library) -> None:
        self.library = library
        self._inputs: tuple[Any, ...] = ()
        self._sent: dict[str, Any] | None = None

    def __call__(self) -> bytes:
        """The news line, or b"" when nothing changed. On the loop: cheap when the
        inputs are the same objects (the registry document is replaced, never changed)."""
        inputs = self.library.availability_inputs()
        if self._inputs and inputs[0] is self._inputs[0] and inputs[1:] == self._inputs[1:]:
            return b""
        self._inputs = inputs
        wire = self.library.availability().wire()
        if wire == self._sent:
            return b""
        self._sent = wire
        return encode_message({"jsonrpc": "2.0", "method": AVAILABILITY_NEWS, "params": wire})


async def publish_availability(writer: LineWriter, library: Library) -> None:
    """Announce before every message the writer sends, and on a timer for the rest."""
    writer.announce = AvailabilityNews(library)
    while True:
        await writer.send_raw(b"")
        await anyio.sleep(NEWS_POLL)
