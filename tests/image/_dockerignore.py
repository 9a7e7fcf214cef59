"""A .dockerignore matcher with BuildKit's semantics, for checks without a Docker engine.

Follows moby/patternmatcher (``ignorefile.ReadAll`` + ``MatchesOrParentMatches``), the
code BuildKit uses to filter the build context:

- a line starting with ``#`` is a comment; surrounding whitespace is trimmed; blank
  lines are skipped; a leading ``!`` re-includes;
- each pattern is cleaned like Go's ``filepath.Clean`` and a leading ``/`` dropped;
- ``*`` matches within one path element, ``?`` one character other than ``/``,
  ``[...]`` a class, ``\\`` escapes; ``**`` matches any number of elements (zero too);
- a pattern that matches a parent directory matches everything below it;
- patterns apply in order, and the last one that matches decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

_REGEX_ESCAPES = set(".+()|{}$")


def _go_clean(path: str) -> str:
    cleaned = posixpath.normpath(path) if path else "."
    # posixpath keeps a leading "//"; Go's Clean does not.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised like ``ignorefile.ReadAll``."""
    patterns = []
    for index, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if index == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = _go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    kind: str  # exact | prefix | suffix | regexp
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """Port of patternmatcher's ``Pattern.compile`` for "/" as separator."""
    regex = "^"
    kind = "exact"
    i = 0
    n = len(text)
    position = 0  # characters consumed so far, as the Go scanner's loop index
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1  # treat **/ as **
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regexp"
                else:
                    regex += "(.*/)?"
                    kind = "regexp"
                if position == 0:
                    kind = "suffix"
            else:
                regex += "[^/]*"
                kind = "regexp"
        elif ch == "?":
            regex += "[^/]"
            kind = "regexp"
        elif ch in _REGEX_ESCAPES:
            regex += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex += "\\" + text[i]
                i += 1
                kind = "regexp"
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex += ch
            kind = "regexp"
        else:
            regex += ch
        position += 1
    compiled = re.compile(regex + "$") if kind == "regexp" else None
    return _Pattern(text, exclusion, kind, compiled)


class DockerIgnore:
    """Decides whether a context path (slash-separated, relative) is excluded."""

    def __init__(self, patterns: list[str]):
        self.patterns = []
        for raw in patterns:
            exclusion = raw.startswith("!")
            text = raw[1:] if exclusion else raw
            if exclusion and not text:
                raise ValueError('illegal exclusion pattern: "!"')
            self.patterns.append(_compile(text, exclusion))

    @classmethod
    def from_file(cls, path: Path) -> DockerIgnore:
        return cls(read_patterns(path.read_text()) if path.exists() else [])

    def is_excluded(self, path: str) -> bool:
        """``MatchesOrParentMatches``: True when the context will not contain ``path``."""
        path = _go_clean(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        matched = False
        for pattern in self.patterns:
            # An inclusion cannot change an already-excluded path, nor an exclusion
            # (a "!" line) an included one: skip them, as patternmatcher does.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched
