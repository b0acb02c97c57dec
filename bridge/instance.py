"""One bridge per charger.

Two bridges driving one charger fight over its current and each other's topics. Before
the service starts, `run` claims its place: an OS lock on the state folder (one bridge per
folder on this machine; the lock dies with the process, however it dies), and a look at the
broker for another bridge online under the same base topic (one bridge per charger across
machines). Each installation has an instance id, kept in the state folder and published in
`<base>/bridge/info`, so that a bridge restarting after a crash recognises its own `online`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from pathlib import Path

from bridge.config import Settings
from bridge.files import atomic_write_json, read_json_object
from bridge.mqtt.client import read_retained
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)

LOCK_FILE = "bridge.lock"
INSTANCE_FILE = "instance.json"
BROKER_CHECK_TIMEOUT_S = 5.0

_ids: dict[Path, str] = {}


class InstanceConflict(Exception):
    """Another bridge runs on this state folder or this base topic; the message names it."""


class StateFolderLock:
    """An exclusive `flock` on `<state folder>/bridge.lock`, held while the file stays open."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        os.close(self.fd)


def lock_state_folder(state_dir: Path) -> StateFolderLock | None:
    """Lock the state folder for this process and write its pid into the lock file.

    InstanceConflict naming the holder's pid when another process holds the lock; None (and a
    warning) when the folder cannot be written: the bridge runs without the lock then, as it
    runs with a folder it cannot save its settings in."""
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        log.warning("cannot lock the state folder %s (%s): a second bridge on it would not be noticed",
                    state_dir, e.strerror or e)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", errors="replace").strip()
        os.close(fd)
        pid = holder if holder.isdigit() else "unknown"
        raise InstanceConflict(
            f"another bridge (pid {pid}) runs on the state folder {state_dir}; stop it first, "
            "or give this one a CHARGEAMPS_STATE_DIR of its own"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return StateFolderLock(fd, path)


def instance_id(state_dir: Path) -> str:
    """This installation's id: made once, kept in `<state folder>/instance.json`.

    A folder that cannot be written gets an id derived from the host and the folder, the
    same on every start."""
    if state_dir in _ids:
        return _ids[state_dir]
    path = state_dir / INSTANCE_FILE
    try:
        stored = (read_json_object(path) or {}).get("instance_id")
    except (OSError, ValueError) as e:
        log.warning("cannot read %s (%s): making a new instance id", path, e)
        stored = None
    if isinstance(stored, str) and stored.strip():
        found = stored.strip()
    else:
        found = uuid.uuid4().hex
        try:
            atomic_write_json(path, {"instance_id": found}, mode=0o644)
        except OSError as e:
            found = uuid.uuid5(uuid.NAMESPACE_URL, f"chargeamps-bridge:{socket.gethostname()}:{state_dir.absolute()}").hex
            log.warning("cannot write %s (%s): using the instance id %s made from the host and the folder",
                        path, e.strerror or e, found)
    _ids[state_dir] = found
    return found


def check_broker(settings: Settings, own_id: str) -> None:
    """InstanceConflict when another bridge is online under this base topic.

    `online` retained with an instance id other than ours is another bridge; with our own id
    it is this installation's (a crash the broker did not cover with the last will). A
    broker that does not answer is not a reason to stay down: the service reconnects."""
    s = settings
    topics = Topics(s.mqtt_base_topic)
    found = read_retained(
        s.mqtt_host, s.mqtt_port, [topics.bridge_state, topics.bridge_info],
        username=s.mqtt_username, password=s.mqtt_password, tls=s.mqtt_tls,
        ca_file=str(s.mqtt_ca_file) if s.mqtt_ca_file else None, timeout_s=BROKER_CHECK_TIMEOUT_S,
    )
    if found is None:
        log.warning("could not check the broker %s:%d for another bridge under %s (no answer); starting",
                    s.mqtt_host, s.mqtt_port, topics.base)
        return
    if found.get(topics.bridge_state, b"").strip() != b"online":
        return
    try:
        other = json.loads(found.get(topics.bridge_info, b"{}")).get("instance_id")
    except (ValueError, AttributeError, RecursionError):  # whatever another client left there
        other = None
    if not other:
        log.warning("%s says online without an instance id (an older bridge, or one that crashed): starting",
                    topics.bridge_state)
        return
    if other != own_id:
        shown = "".join(c for c in str(other)[:64] if c.isprintable())
        raise InstanceConflict(
            f"another bridge (instance {shown}) is online on {s.mqtt_host}:{s.mqtt_port} under "
            f"base topic {topics.base}; not starting beside it. If it no longer runs, clear its state: "
            f"mosquitto_pub -r -n -t '{topics.bridge_state}'"
        )


def claim(settings: Settings) -> StateFolderLock | None:
    """Claim this bridge's place before the service starts; InstanceConflict when taken.
    Keep the returned lock for as long as the process runs."""
    lock = lock_state_folder(settings.chargeamps_state_dir)
    try:
        check_broker(settings, instance_id(settings.chargeamps_state_dir))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock
