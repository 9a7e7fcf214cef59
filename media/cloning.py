"""What both cloning runners share: the conditioning cache, the reference step and
speaking the text sentence by sentence.
Stdlib at import (the handler imports the runner modules for their pre-flight checks)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from errors import InvalidInput
from media.reference_audio import Reference, ReferenceSpec, file_sha256, prepare
from media.speech import SpeechAssembler
from media.text import max_chars, split_text
from runtime.protocol import OutputFile
from runtime.runner import RunContext

T = TypeVar("T")


class ConditioningCache(Generic[T]):
    """Speaker conditionings by the reference file's sha256, least recently used out.

    Computing a speaker's conditioning (voice encoder, speech tokens, mel features)
    is the repeated part of a cloning job; a repeated reference reuses it. The key is
    the digest of the reference *file*, so a hit skips decoding the audio too.
    """

    def __init__(self, max_items: int, on_evict: Callable[[T], None] | None = None) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self._on_evict = on_evict
        self._items: OrderedDict[str, T] = OrderedDict()
        self.hits = self.misses = 0

    def get_or_make(self, key: str, make: Callable[[], T]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        value = make()  # an error here caches nothing
        self._items[key] = value
        if len(self._items) > self.max_items:
            _, evicted = self._items.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(evicted)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


def reference_key(ctx: RunContext) -> str:
    """The cache key of the job's reference file (fetched, or a saved voice's)."""
    return file_sha256(ctx.inputs["reference_audio"])


def prepared_reference(ctx: RunContext, spec: ReferenceSpec, dest: Path) -> Reference:
    """The job's reference decoded, trimmed and cut for ``spec`` (see reference_audio)."""
    return prepare(ctx.inputs["reference_audio"], spec, dest=dest)


def speak_by_sentence(
    job: dict[str, Any],
    ctx: RunContext,
    *,
    rate: int,
    max_chars_per_call: int,
    synthesize: Callable[[int, str], Any],
) -> list[OutputFile]:
    """Speak ``job["text"]`` in pieces of at most ``max_chars_per_call`` characters.

    ``synthesize(n, piece)`` (``n`` counts from 1) returns one piece's mono float audio
    at ``rate``; each piece becomes one streamed chunk when the job streams.

    Raises:
        InvalidInput: the text has nothing speakable (field ``text``).
    """
    pieces = split_text(job["text"], max_chars(max_chars_per_call))
    if not pieces:
        raise InvalidInput("text: nothing speakable in the text", field="text")
    speech = SpeechAssembler.for_job(ctx, job, rate=rate)
    for n, piece in enumerate(pieces, start=1):
        speech.add(synthesize(n, piece))
        speech.spoke(n, len(pieces))
    return speech.finish()
