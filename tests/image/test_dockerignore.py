"""The .dockerignore matcher behaves like BuildKit's, and our .dockerignore keeps the
context to what the image needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image._dockerignore import DockerIgnore, read_patterns

ROOT = Path(__file__).resolve().parents[2]

# (patterns, path, excluded), cases taken from moby/patternmatcher's behaviour.
MATCHER_TABLE = [
    (["**"], "file", True),
    (["**"], "dir/file", True),
    (["**/"], "file", True),
    (["**/**"], "dir/file", True),
    (["dir/**"], "dir/file", True),
    (["dir/**"], "dir/a/b/file", True),
    (["dir/**"], "dirx/file", False),
    (["**/file"], "file", True),
    (["**/file"], "dir/file", True),
    (["**/file"], "dir/dir/file", True),
    (["**/file"], "dir/notfile", False),
    (["dir/**/file"], "dir/file", True),
    (["dir/**/file"], "dir/a/b/file", True),
    (["dir/**/file"], "other/dir/file", False),
    (["**/*.py[cod]"], "a/b/c.pyc", True),
    (["**/*.py[cod]"], "c.pyo", True),
    (["**/*.py[cod]"], "a/c.py", False),
    # "*" stays inside one path element, but a match on a parent dir covers its files.
    (["*.md"], "README.md", True),
    (["*.md"], "docs/guide.md", False),
    (["*"], "dir/file", True),
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[a-c]x"], "dx", False),
    (["file.txt"], "file_txt", False),  # "." is literal, not a regex wildcard
    (["a+b"], "a+b", True),
    # Cleaning: a leading "/" and ".." segments are normalised away.
    (["/abs"], "abs", True),
    (["dir/../other"], "other", True),
    (["dir/"], "dir/file", True),
    # A matching parent directory excludes everything below it.
    (["tests"], "tests/image/test_x.py", True),
    (["tests"], "src/tests/x.py", False),
    (["**/tests"], "src/tests/x.py", True),
    # "!" re-includes; the last matching line wins.
    (["docs", "!docs/keep.md"], "docs/keep.md", False),
    (["docs", "!docs/keep.md"], "docs/other.md", True),
    (["a", "!a"], "a", False),
    (["!a", "a"], "a", True),
    (["*.py", "!keep.py", "keep.py"], "keep.py", True),
    # The context root itself is never excluded.
    (["**"], ".", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), MATCHER_TABLE)
def test_matcher_follows_buildkit_semantics(patterns: list[str], path: str, excluded: bool):
    assert DockerIgnore(read_patterns("\n".join(patterns))).is_excluded(path) is excluded


def test_reader_skips_comments_and_blank_lines_and_normalises():
    text = "\ufeff# comment\n\n  tests  \n!  /docs/keep.md\n./build/\n# !not-a-pattern\n"
    assert read_patterns(text) == ["tests", "!docs/keep.md", "build"]


def test_a_bare_bang_is_rejected():
    with pytest.raises(ValueError, match="illegal exclusion"):
        DockerIgnore(["!"])


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore.from_file(ROOT / ".dockerignore")


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".github/workflows/test.yml",
        ".runpod/hub.json",
        ".env",
        "tests/conftest.py",
        "tests/image/test_dockerignore.py",
        "bench/bench_tts.py",
        "docs/conventions.md",
        "README.md",
        "models/__pycache__/contract.cpython-311.pyc",
        "storage/_s3.pyc",
        ".venv/bin/python",
        ".pytest_cache/v/cache/nodeids",
        "outputs/jobs/x/out.wav",
    ],
)
def test_context_leaves_out_tests_benches_caches_and_secrets(ignore: DockerIgnore, path: str):
    assert ignore.is_excluded(path), f"{path} would be sent to the builder"


@pytest.mark.parametrize(
    "path",
    [
        "handler.py",
        "config.py",
        "errors.py",
        "pyproject.toml",
        "test_input.json",
        "requirements.lock",
        "docker/install.sh",
        "models/contract.py",
        "models/schema.json",
        "runners/piper.py",
        "bootstrap/__init__.py",
        "storage/_s3.py",
    ],
)
def test_context_keeps_what_the_image_needs(ignore: DockerIgnore, path: str):
    assert not ignore.is_excluded(path), f"{path} is excluded by .dockerignore"
