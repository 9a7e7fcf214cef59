"""What the cloning runners share and can be checked without their libraries: the
conditioning cache, and runner modules that import no model library (the handler
imports them for their pre-flight checks).

The runners themselves run against the real Chatterbox and F5-TTS, through the
handler, in tests/runners/test_chatterbox.py and tests/runners/test_f5tts.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from media.cloning import ConditioningCache


def test_the_cache_is_bounded_and_least_recently_used_goes_first():
    evicted = []
    cache = ConditioningCache(2, on_evict=evicted.append)
    for key in ("a", "b", "a", "c"):
        cache.get_or_make(key, lambda k=key: k.upper())
    assert evicted == ["B"] and "a" in cache and "c" in cache and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 3)
    with pytest.raises(ValueError):
        ConditioningCache(0)


def test_a_failed_make_caches_nothing():
    cache: ConditioningCache[str] = ConditioningCache(2)

    def fail() -> str:
        raise RuntimeError("silent reference")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            cache.get_or_make("k", fail)
    assert len(cache) == 0 and cache.misses == 2


@pytest.mark.slow
def test_runner_modules_import_no_model_library():
    # the handler imports these modules for their pre-flight checks
    code = (
        "import sys, runners.chatterbox, runners.f5tts, models.registry; "
        "print(sorted({'torch', 'chatterbox', 'f5_tts', 'av', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
