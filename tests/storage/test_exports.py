"""Keep storage's public surface honest (httpx test_exported_members style)."""

from __future__ import annotations

import storage

PUBLIC = {
    "MAX_PRESIGN_S",
    "MIN_PRESIGN_S",
    "LoadedVoice",
    "MediaRef",
    "Published",
    "S3Settings",
    "VoiceInfo",
    "allow_local_files",
    "delete_voice",
    "fetch",
    "list_voices",
    "load_voice",
    "local_file_uri",
    "parse_media_ref",
    "publish",
    "s3_settings",
    "save_voice",
    "scratch",
    "validate_prefix",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(storage.__all__) == PUBLIC
    for name in storage.__all__:
        value = getattr(storage, name)
        if isinstance(value, int):  # a constant (the presign limits) has no __module__
            continue
        assert value.__module__.startswith("storage.")


def test_no_other_public_names() -> None:
    extra = {
        name
        for name in vars(storage)
        if not name.startswith("_") and name not in PUBLIC and not name.startswith("storage")
    }
    # Submodules are private (_refs, _fetch, ...); nothing else is exported.
    assert extra == set()
