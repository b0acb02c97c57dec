"""What both ends of an OCPP 1.6J connection share."""

from __future__ import annotations

import logging
from typing import Any

SUBPROTOCOL = "ocpp1.6"  # the WebSocket subprotocol OCPP-J 1.6 names


class _QuietFrames(logging.LoggerAdapter):
    """The `ocpp` library logs every frame at INFO; here they are DEBUG (LOG_LEVEL=DEBUG shows them).
    A bad frame it logs with a traceback: here one warning line, the answer says the rest."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("exc_info", None)
        self.warning(msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


def frame_logger(name: str) -> logging.LoggerAdapter:
    return _QuietFrames(logging.getLogger(name), {})
