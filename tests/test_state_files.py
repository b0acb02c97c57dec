"""The state folder's files: read without trusting them, so a broken file never stops the bridge."""

from __future__ import annotations

import pytest

from bridge.files import atomic_write_json, read_json_object
from bridge.state import RuntimeSettings, RuntimeStore

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
