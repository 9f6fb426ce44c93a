"""The runtime's one output stream, split into the function's text and the runtime's control lines."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable

# Keep in sync with runtime.CONTROL_MARK.
CONTROL_MARK = "\x1elocal-lambda\x1e"
# Lines of runtime output kept per environment for get_logs() and startup failures.
RING_LINES = 2000

LOG = logging.getLogger(__name__)


class RuntimeOutput:
    """Reads the pipe to its end: text goes to ``on_text``, each ``end`` control line to ``on_end``."""

    def __init__(self, on_text: Callable[[str], None], on_end: Callable[[str, float, int], None]) -> None:
        self._on_text = on_text
        self._on_end = on_end
        self._ring: deque[str] = deque(maxlen=RING_LINES)

    def text(self) -> str:
        return "".join(self._ring)

    def tail(self, lines: int = 20) -> str:
        return "".join(list(self._ring)[-lines:])

    def read(self, fd: int) -> None:
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(line.decode("utf-8", "replace"), newline=True)
        if pending:
            self._line(pending.decode("utf-8", "replace"), newline=False)

    def _line(self, line: str, newline: bool) -> None:
        text, _, control = line.partition(CONTROL_MARK)
        if text or not control:
            text += "\n" if newline else ""
            self._ring.append(text)
            self._on_text(text)
        words = control.split()
        # "end <request-id> <duration-ms> <max-rss-mb>", written after each invocation's output.
        if words[:1] == ["end"] and len(words) == 4:
            self._on_end(words[1], float(words[2]), int(words[3]))
        elif words:
            LOG.debug("Lambda runtime: %s", " ".join(words))
