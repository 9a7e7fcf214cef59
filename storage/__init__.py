"""Input media in, outputs out.

Inputs: :func:`parse_media_ref` (pure) then :func:`fetch` into the job's
:func:`scratch` directory: https via RunPod's SSRF-safe fetch, ``s3://`` with the
job's credentials, base64 ``data:`` URIs, all size-capped and content-type checked.

Outputs: :func:`publish` uploads a runner's output files to S3-compatible storage
and returns the contract's outputs with presigned URLs, or copies them into the
local store when no bucket is configured (:func:`s3_settings` returns ``None``).

Modules: ``_refs`` (parsing), ``_fetch`` (inputs), ``_s3`` (settings, client),
``_publish`` (outputs), ``_local`` (local store), ``_scratch`` (per-job dirs),
``_voices`` (saved cloning voices, volume or bucket).
"""

from ._fetch import fetch
from ._publish import publish
from ._refs import MediaRef, parse_media_ref, validate_prefix
from ._s3 import S3Settings, s3_settings
from ._scratch import scratch
from ._voices import LoadedVoice, VoiceInfo, delete_voice, list_voices, load_voice, save_voice

__all__ = [
    "LoadedVoice",
    "MediaRef",
    "S3Settings",
    "VoiceInfo",
    "delete_voice",
    "fetch",
    "list_voices",
    "load_voice",
    "parse_media_ref",
    "publish",
    "s3_settings",
    "save_voice",
    "scratch",
    "validate_prefix",
]
