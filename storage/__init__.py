"""Input media in, outputs out.

Inputs: :func:`parse_media_ref` (pure) then :func:`fetch` into the job's
:func:`scratch` directory: https via RunPod's SSRF-safe fetch, ``s3://`` with the
job's credentials, base64 ``data:`` URIs, all size-capped and content-type checked;
local files in local runs only (:func:`allow_local_files`).

Outputs: :func:`publish` uploads a runner's output files to S3-compatible storage
with presigned URLs (lifetime ``MIN_PRESIGN_S..MAX_PRESIGN_S``), or copies them into
the local store when no bucket is configured (:func:`s3_settings` returns ``None``);
each file comes back as a :class:`Published`.

Modules: ``_refs`` (parsing), ``_fetch`` (inputs), ``_s3`` (settings, client),
``_publish`` (outputs), ``_local`` (local store), ``_scratch`` (per-job dirs),
``_voices`` (saved cloning voices, volume or bucket). Files become visible through
``runtime.atomic``, as everywhere else.

Names are exported lazily (PEP 562): importing one of them loads only its module
and what that needs (boto3 only with the S3 client).
"""

import importlib as _importlib
from typing import Any as _Any

_EXPORTS = {
    "fetch": "storage._fetch",
    "MAX_PRESIGN_S": "storage._publish",
    "MIN_PRESIGN_S": "storage._publish",
    "Published": "storage._publish",
    "publish": "storage._publish",
    "MediaRef": "storage._refs",
    "allow_local_files": "storage._refs",
    "local_file_uri": "storage._refs",
    "parse_media_ref": "storage._refs",
    "validate_prefix": "storage._refs",
    "S3Settings": "storage._s3",
    "s3_settings": "storage._s3",
    "scratch": "storage._scratch",
    "LoadedVoice": "storage._voices",
    "VoiceInfo": "storage._voices",
    "delete_voice": "storage._voices",
    "list_voices": "storage._voices",
    "load_voice": "storage._voices",
    "save_voice": "storage._voices",
}

__all__ = [
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
]


def __getattr__(name: str) -> _Any:
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")
