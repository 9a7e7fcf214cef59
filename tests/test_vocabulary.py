"""Each word of the contract is defined once; these tests keep the other places equal."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import get_args

import pytest

import errors
import storage
from media import speech as _audio
from models import contract, jobs, registry
from models.host import _failed_to_error
from models.tasks import _speech
from models.tasks._speech import AUDIO_FORMATS
from runtime import protocol as p

ROOT = Path(__file__).resolve().parents[1]


def _subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))}


def test_error_table_is_the_contracts_error_codes():
    assert sorted(errors.ERRORS) == sorted(get_args(contract.ErrorCode))
    assert all(cls.code == code for code, cls in errors.ERRORS.items())
    assert set(errors.ERRORS.values()) == {errors.WorkerError} | _subclasses(errors.WorkerError)


def test_the_contract_page_lists_every_error_code():
    text = (ROOT / "docs/reference/contract.md").read_text()
    listed = re.search(r"^Codes: (.+?)\. No", text, re.S | re.M)
    assert listed, "docs/reference/contract.md's 'Codes:' line is missing"
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == sorted(errors.ERRORS)


def test_tasks_are_the_job_union_tags():
    # Each task's job model is tagged with the task's own name, and the union the
    # contract parses is exactly the registry's tasks.
    for name, spec in registry.TASKS.items():
        assert get_args(spec.job.model_fields["task"].annotation) == (name,)
    assert jobs.task_names() == tuple(registry.TASKS)
    for name in registry.TASKS:
        with pytest.raises(errors.InvalidInput) as info:
            jobs.parse_job({"task": name, "no_such_field": 1})
        assert all(d["field"] != "task" for d in info.value.details)  # the tag was accepted


def test_speech_runners_encode_every_audio_format():
    assert tuple(_audio.ENCODINGS) == AUDIO_FORMATS
    assert _audio.OPUS_RATES == _speech.OPUS_RATES  # the job's check, the writer's rates


def test_output_carries_the_runners_output_file_fields():
    runner_side = {f.name for f in dataclasses.fields(p.OutputFile)} - {"path"}
    assert runner_side <= set(contract.Output.model_fields)


def test_a_published_file_is_the_contracts_output_field_for_field():
    # The worker builds each Output from storage's Published by its fields.
    published = [f.name for f in dataclasses.fields(storage.Published)]
    assert published == list(contract.Output.model_fields)


@pytest.mark.parametrize(
    ("code", "field", "expected", "message"),
    [
        ("invalid_input", "voice", errors.InvalidInput, "voice: unknown"),
        ("unsupported_media", "video", errors.UnsupportedMedia, "voice: unknown"),
        ("timeout", None, errors.JobTimeout, "voice: unknown"),
        ("runner_crashed", None, errors.RunnerCrashed, "runner echo failed on this job: "),
        ("internal", None, errors.RunnerCrashed, "runner echo failed on this job: "),
        ("no_such_code", None, errors.RunnerCrashed, "runner echo failed on this job: "),
    ],
)
def test_a_runners_failure_code_becomes_its_error_class(code, field, expected, message):
    error = _failed_to_error("echo", p.Failed("j", code, "voice: unknown", field))
    assert type(error) is expected
    assert error.message.startswith(message)
    assert error.field == field
