"""What both ends of an OCPP 1.6J connection share."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from ocpp.messages import Call, MessageType, validate_payload

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


async def raw_call(cp: Any, action: str, payload: dict, timeout_s: float) -> dict:
    """Send `action` with a camelCase `payload` as it came off another connection and return the
    answer's payload, checked against the OCPP 1.6 schema. Raises the CallError's OCPPError, a schema
    violation (an OCPPError too), asyncio.TimeoutError or ConnectionClosed. Serialized with the
    library's own calls on that connection (its call lock): OCPP-J allows one call in flight."""
    message = Call(unique_id=str(uuid.uuid4()), action=action, payload=payload)
    async with cp._call_lock:
        await cp._send(message.to_json())
        answer = await cp._get_specific_response(message.unique_id, timeout_s)
    if answer.message_type_id == MessageType.CallError:
        raise answer.to_exception()
    answer.action = action
    await validate_payload(answer, "1.6")
    return answer.payload
