"""The state folder's files: read without trusting them, so a broken file never stops the bridge."""

from __future__ import annotations

import pytest

from bridge.files import atomic_write_json, read_json_object
from bridge.state import ControlMethodStore, RuntimeSettings, RuntimeStore

DEFAULTS = RuntimeSettings(max_a=24.0, default_current=16, enabled=True)


def test_read_json_object_round_trips_what_was_written(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_json(path, {"max_a": 18.0})
    assert read_json_object(path) == {"max_a": 18.0}


def test_read_json_object_of_a_missing_file_is_none(tmp_path):
    assert read_json_object(tmp_path / "missing.json") is None


@pytest.mark.parametrize("content, words", [
    (b"[1, 2]", "not a JSON object"),
    (b"{ not json", "Expecting"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_read_json_object_refuses_what_is_not_a_json_object_with_a_value_error(tmp_path, content, words):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=words):
        read_json_object(path)


def test_runtime_store_sets_a_file_that_is_not_utf8_aside_and_uses_the_defaults(tmp_path):
    path = tmp_path / "runtime.json"
    path.write_bytes(b'{"max_a": \xff18}')
    store = RuntimeStore(path)
    assert store.load(DEFAULTS) == DEFAULTS
    assert "corrupt" in store.last_error and "not UTF-8" in store.last_error
    assert not path.exists() and list(tmp_path.glob("runtime.json.corrupt-*"))


def test_runtime_store_restores_what_it_saved(tmp_path):
    store = RuntimeStore(tmp_path / "runtime.json")
    changed = RuntimeSettings(max_a=18.0, default_current=10, enabled=False)
    assert store.save(changed)
    assert RuntimeStore(tmp_path / "runtime.json").load(DEFAULTS) == changed


def test_control_method_store_restores_what_was_learned_and_forgets_what_no_longer_holds(tmp_path):
    path = tmp_path / "ocpp.json"
    store = ControlMethodStore(path)
    assert store.load() == {} and store.last_error is None  # no file yet
    assert store.learned("HALO1", "TxProfile for the transaction")
    assert store.learned("AURA1", "TxDefaultProfile on the connector")
    assert ControlMethodStore(path).load() == {"HALO1": "TxProfile for the transaction",
                                               "AURA1": "TxDefaultProfile on the connector"}
    assert store.learned("AURA1", None)  # it took none any more
    assert read_json_object(path) == {"control_methods": {"HALO1": "TxProfile for the transaction"}}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("content", [b"\xff{", b"[]", b'{"control_methods": ["TxProfile"]}',
                                     b'{"control_methods": {"HALO1": 3}}'])
def test_control_method_store_ignores_a_corrupt_file_and_probes_again(tmp_path, content):
    path = tmp_path / "ocpp.json"
    path.write_bytes(content)
    store = ControlMethodStore(path)
    assert store.load() == {}
    assert "corrupt" in store.last_error and "probed again" in store.last_error
    assert store.learned("HALO1", "TxProfile for the transaction")  # the next one learned replaces it
    assert ControlMethodStore(path).load() == {"HALO1": "TxProfile for the transaction"}


def test_control_method_store_that_cannot_write_says_so(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    store = ControlMethodStore(folder / "sub" / "ocpp.json")
    (folder / "sub").write_text("a file where the folder should be")
    assert store.learned("HALO1", "TxProfile for the transaction") is False
    assert "cannot write" in store.last_error
