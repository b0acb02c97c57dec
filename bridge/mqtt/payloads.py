"""Reading and writing MQTT payloads: numbers, booleans, connector modes.

Anything can arrive on a topic; every parser either returns a clean value or
raises `PayloadError` with a message a user understands.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bridge.units import plain_decimal

# Commands are a number or a word; anything this big is not one, and refusing
# it before decoding keeps a hostile payload from costing time.
MAX_COMMAND_PAYLOAD_BYTES = 4096

_SHOWN_CHARS = 40
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_TRUE_WORDS = frozenset({"on", "true", "1"})
_FALSE_WORDS = frozenset({"off", "false", "0"})
MODES = ("On", "Off", "Schedule")


class PayloadError(ValueError):
    """A payload that cannot be read; the message says what was expected."""


def shown(payload: bytes | str) -> str:
    """A short, safe rendering of a payload for messages and logs."""
    if isinstance(payload, bytes):
        text = payload[: _SHOWN_CHARS * 4].decode("utf-8", errors="replace")
    else:
        text = str(payload)
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + f" ... ({len(payload)} bytes)"
    return repr(text)


def check_size(payload: bytes | str, limit: int = MAX_COMMAND_PAYLOAD_BYTES) -> bytes:
    """The payload's bytes; refuses an oversized payload (every command topic) or one that is no bytes or text."""
    if isinstance(payload, str):
        raw = payload.encode("utf-8", errors="surrogatepass")
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        raw = bytes(payload)
    else:
        raise PayloadError(f"expected bytes or text, got {type(payload).__name__}")
    if len(raw) > limit:
        raise PayloadError(f"payload too large ({len(raw)} bytes, at most {limit})")
    return raw


def decode_text(payload: bytes | str, limit: int = MAX_COMMAND_PAYLOAD_BYTES) -> str:
    """The payload as stripped UTF-8 text; refuses oversized or non-text payloads."""
    raw = check_size(payload, limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"payload is not UTF-8 text: {shown(raw)}") from None
    text = text.strip()
    if not text:
        raise PayloadError("payload is empty")
    return text


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a usable value")


def load_json(text: str, original: bytes | str) -> Any:
    """Strict JSON (no NaN/Infinity); deep nesting and huge numbers are errors, not crashes."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("JSON nested too deeply") from None
    except ValueError:
        # json.JSONDecodeError, and int conversions beyond Python's digit limit
        raise PayloadError(f"not valid JSON: {shown(original)}") from None


def coerce_number(value: Any, what: str = "a number") -> float:
    """A finite float from a JSON value: a number or a numeric string."""
    if isinstance(value, bool):
        raise PayloadError(f"expected {what}, got a boolean ({str(value).lower()})")
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            raise PayloadError(f"expected {what}, got a number too large") from None
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _PLAIN_NUMBER.fullmatch(text):
            raise PayloadError(f"expected {what}, got {shown(value)}")
        number = float(text)
    elif value is None:
        raise PayloadError(f"expected {what}, got null")
    else:
        raise PayloadError(f"expected {what}, got a JSON {_json_kind(value)}")
    if not math.isfinite(number):
        raise PayloadError(f"expected {what}, got a value out of range")
    return number


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _unwrap_value(obj: Any, example: str) -> Any:
    if isinstance(obj, dict):
        if "value" not in obj:
            raise PayloadError(f'expected {example} or {{"value": ...}}, got a JSON object without "value"')
        return obj["value"]
    return obj


# openHAB's number channels with a unit send the quantity: "16 A".
_AMPS_UNIT = re.compile(r"\s*A\Z", re.ASCII)


def parse_number(payload: bytes | str) -> float:
    """A number from `16`, ` 10.5 `, `16 A`, `"16"`, `{"value": 16}`."""
    text = decode_text(payload)
    if _PLAIN_NUMBER.fullmatch(_AMPS_UNIT.sub("", text)):
        text = _AMPS_UNIT.sub("", text)
        number = float(text)
        if not math.isfinite(number):
            raise PayloadError("expected a number like 16 or 10.5, got a value out of range")
        return number
    if text[0] not in '{["':
        raise PayloadError(f"expected a number like 16 or 10.5, got {shown(text)}")
    obj = _unwrap_value(load_json(text, payload), "a number")
    return coerce_number(obj, "a number like 16 or 10.5")


def parse_bool(payload: bytes | str) -> bool:
    """A boolean from `ON`/`OFF`, `true`/`false`, `1`/`0` (any case), also `{"value": ...}`."""
    text = decode_text(payload)
    if text.startswith("{"):
        value = _unwrap_value(load_json(text, payload), "ON or OFF")
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        text = value.strip() if isinstance(value, str) else repr(value)
    elif text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1].strip()
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise PayloadError(f"expected ON or OFF (or true/false, 1/0), got {shown(text)}")


def _parse_choice(payload: bytes | str, choices: tuple[str, ...]) -> str:
    """One of `choices` (any case; plain, quoted or {"value": ...}), spelled as in `choices`."""
    what = f"{', '.join(choices[:-1])} or {choices[-1]}"
    text = decode_text(payload)
    if text.startswith("{"):
        value = _unwrap_value(load_json(text, payload), what)
        if not isinstance(value, str):
            raise PayloadError(f"expected {what}, got a JSON {_json_kind(value)}")
        text = value.strip()
    elif text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1].strip()
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise PayloadError(f"expected {what}, got {shown(text)}")


def parse_mode(payload: bytes | str) -> str:
    """A connector mode `On`, `Off` or `Schedule` (any case), normalised."""
    return _parse_choice(payload, MODES)


def parse_charge_mode(payload: bytes | str) -> str:
    """A charge mode `fast`, `pv`, `minpv` or `off` (any case)."""
    from bridge.balancer.power import CHARGE_MODES

    return _parse_choice(payload, CHARGE_MODES)


# A deliberate press: Home Assistant's button sends PRESS (the `payload_press` the
# bridge announces); a person typing a command writes the action's name.
def parse_press(payload: bytes | str, action: str = "reboot") -> str:
    """A deliberate press of a button: `PRESS` or the action's name, any case. An empty
    payload (how a retained message is cleared) or anything else is refused."""
    try:
        text = decode_text(payload)
    except PayloadError as e:
        raise PayloadError(f"{e}: {action} needs the payload PRESS or {action}") from None
    if text.lower() in ("press", action.lower()):
        return text
    raise PayloadError(f"{action} needs the payload PRESS or {action}, got {shown(text)}")


def format_number(x: float) -> str:
    """`16`, `10.5`, `0.333`: plain, at most three decimals, no trailing zeros."""
    return plain_decimal(x, 3)


def format_bool(b: bool) -> str:
    return "ON" if b else "OFF"
