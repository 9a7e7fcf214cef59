"""Jobs written for another worker, read as this worker's own.

One dialect so far: RunPod's ``worker-faster_whisper`` (its ``src/rp_schema.py``).
The rule that recognises it, documented in ``docs/guides/migrate.md``:

- a job with a ``task`` is this worker's own, whatever its other fields;
- a job without one whose fields are all that worker's, ``audio`` or
  ``audio_base64`` among them, is a ``transcribe`` job in that dialect: its fields
  are renamed to this worker's, its defaults are that worker's (model ``base``, the
  temperature ladder 0 to 1 in steps of 0.2, no length penalty), and its result
  carries that worker's keys beside this one's (``TranscribeJob.faster_whisper``);
- any other job without a ``task`` is refused, naming ``task``; when it holds some of
  that worker's fields, the error names the ones that are not.

Pure: nothing here fetches or runs anything.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from errors import InvalidInput

FASTER_WHISPER_FIELDS = frozenset(
    {
        "audio",
        "audio_base64",
        "model",
        "transcription",
        "translate",
        "translation",
        "language",
        "temperature",
        "best_of",
        "beam_size",
        "patience",
        "length_penalty",
        "suppress_tokens",
        "initial_prompt",
        "condition_on_previous_text",
        "temperature_increment_on_fallback",
        "compression_ratio_threshold",
        "logprob_threshold",
        "no_speech_threshold",
        "enable_vad",
        "word_timestamps",
    }
)
"""Every input field worker-faster_whisper's ``rp_schema.py`` declares."""

TEXT_FORMATS = ("plain_text", "formatted_text", "srt", "vtt")
"""worker-faster_whisper's ``transcription`` and ``translation`` formats."""

# worker-faster_whisper's model names that are not this worker's own.
MODEL_ALIASES = {"turbo": "large-v3-turbo"}

# That worker's defaults where they differ from this worker's (rp_schema.py): its
# model, and no length penalty; its temperature 0 with increment 0.2 is the same
# ladder as this worker's default, and is set explicitly so a job that gives only
# one of the two means what it meant there.
DEFAULTS = {"model": "base", "length_penalty": 0.0}

# This worker's field -> that worker's, for fields whose names differ.
RENAMED = {"vad": "enable_vad", "timestamps": "word_timestamps"}


@dataclass(frozen=True)
class Reading:
    """A job in this worker's terms, and how to name its fields in an error."""

    job: dict[str, Any]
    field_names: dict[str, str] | None = None

    def caller_field(self, field: str) -> str:
        """The field as the caller wrote it (``vad`` -> ``enable_vad`` in the dialect)."""
        head, _, rest = field.partition(".")
        named = (self.field_names or {}).get(head, head)
        return f"{named}.{rest}" if rest else named


def read(raw: dict[str, Any]) -> Reading:
    """``raw`` as this worker's job: unchanged when it has a ``task``.

    Raises:
        InvalidInput: no ``task``, and the job is not worker-faster_whisper's
            (``field="task"``), or it is but its audio or a text format is wrong
            (naming that field as the caller wrote it).
    """
    if "task" in raw:
        return Reading(raw)
    theirs = FASTER_WHISPER_FIELDS.intersection(raw)
    if not theirs & {"audio", "audio_base64"}:
        raise InvalidInput(
            "task: is required (a job without one is read as worker-faster_whisper's "
            "transcription only when it has `audio` or `audio_base64`)",
            field="task",
        )
    if foreign := sorted(set(raw) - FASTER_WHISPER_FIELDS):
        raise InvalidInput(
            f"task: is required: without it this job reads as worker-faster_whisper's "
            f"transcription, whose fields do not include {', '.join(map(repr, foreign))}; "
            "add `task` to send this worker's own job",
            field="task",
        )
    return _faster_whisper(raw)


def _faster_whisper(raw: dict[str, Any]) -> Reading:
    job = {**DEFAULTS, **raw, "task": "transcribe"}
    if "temperature" not in raw and "temperature_increment_on_fallback" not in raw:
        job["temperature"], job["temperature_increment_on_fallback"] = 0.0, 0.2
    names: dict[str, str] = {}

    audio, encoded = job.pop("audio", None), job.pop("audio_base64", None)
    if bool(audio) == bool(encoded):
        raise InvalidInput(
            "audio: give either `audio` (a URL) or `audio_base64`, not "
            + ("both" if audio else "neither"),
            field="audio",
        )
    if encoded:
        job["audio"], names["audio"] = _data_uri(encoded), "audio_base64"
    else:
        job["audio"] = audio

    for ours, theirs in RENAMED.items():
        if theirs in job:
            job[ours] = job.pop(theirs)
            names[ours] = theirs
    model = job.get("model") or DEFAULTS["model"]
    job["model"] = MODEL_ALIASES.get(model, model) if isinstance(model, str) else model
    if job.get("language") == "":
        job["language"] = None

    transcription = text_format(job.pop("transcription", "plain_text"), "transcription")
    translation = text_format(job.pop("translation", "plain_text"), "translation")
    translate = job.pop("translate", False)
    if not isinstance(translate, bool):
        raise InvalidInput("translate: must be true or false", field="translate")
    job["faster_whisper"] = {
        "transcription": transcription,
        "translation": translation if translate else None,
    }
    return Reading(job, field_names=names)


def text_format(value: Any, field: str) -> str:
    """One of :data:`TEXT_FORMATS`, spelled as that worker's users spell it.

    Its own ``test_input.json`` says ``"plain text"``, which that worker serves as
    plain text (it falls back to plain text for any name it does not know). Here
    spaces and hyphens read as underscores, and any other name is refused: a typo
    in a subtitle format should not come back as plain text.
    """
    if isinstance(value, str):
        name = value.strip().lower().replace(" ", "_").replace("-", "_")
        if name in TEXT_FORMATS:
            return name
    raise InvalidInput(f"{field}: {value!r} is not one of {', '.join(TEXT_FORMATS)}", field=field)


def _data_uri(encoded: Any) -> str:
    # That worker writes the bytes to a .wav temp file whatever they are; the
    # runner here probes the content, so the media type stays generic.
    if not isinstance(encoded, str):
        raise InvalidInput("audio_base64: must be a base64 string", field="audio_base64")
    payload = "".join(encoded.split())
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "audio_base64: is not valid base64 (A-Z a-z 0-9 + / and '=' padding)",
            field="audio_base64",
        ) from None
    return f"data:application/octet-stream;base64,{payload}"
