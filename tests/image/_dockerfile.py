"""Just enough of the Dockerfile grammar to check the image without a Docker engine.

Covers what this repository's Dockerfile uses: comments, ``\\`` line continuations,
parser directives, global and per-stage ``ARG`` defaults substituted into ``FROM``,
``ENV`` in both spellings, shell and JSON (exec) forms, and ``COPY``/``ADD`` flags.
Heredocs are not supported; :func:`parse` refuses them rather than misread them.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VAR = re.compile(rf"\$(?:\{{(?P<braced>{_NAME})(?::?-(?P<default>[^}}]*))?\}}|(?P<bare>{_NAME}))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the text after the keyword, continuations joined
    line: int  # 1-based line of the keyword

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD ["python", ...]), else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass(frozen=True)
class Copy:
    """A COPY or ADD: its flags, sources (relative to the context) and destination."""

    instruction: Instruction
    flags: dict[str, str]
    sources: list[str]
    dest: str

    @property
    def from_stage(self) -> str | None:
        return self.flags.get("from")


@dataclass
class Stage:
    image: str  # with ARG defaults substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def copies(self) -> list[Copy]:
        return [parse_copy(i) for i in self.instructions if i.keyword in ("COPY", "ADD")]

    def env(self) -> dict[str, str]:
        """ENV values set in this stage (raw, variables not expanded)."""
        values: dict[str, str] = {}
        for instruction in self.of("ENV"):
            values.update(parse_env(instruction.args))
        return values

    def workdir(self) -> PurePosixPath:
        """The last WORKDIR of the stage (absolute), or /."""
        current = PurePosixPath("/")
        for instruction in self.of("WORKDIR"):
            current = current / instruction.args.strip()
        return current


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def all_copies(self) -> list[Copy]:
        return [c for s in self.stages for c in s.copies()]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines and drop comments, like BuildKit's parser."""
    lines = text.splitlines()
    result: list[tuple[int, str]] = []
    start: int | None = None
    parts: list[str] = []
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        # Parser directives (# syntax=...) are comments to everything but BuildKit's
        # front end; a comment line inside a continuation is dropped, not joined.
        if stripped.startswith("#"):
            continue
        if not stripped:
            continue  # an empty line inside a continuation is skipped
        if start is None:
            start = number
        if stripped.endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        result.append((start, " ".join(p.strip() for p in parts)))
        start, parts = None, []
    if parts:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return result


def substitute(value: str, variables: dict[str, str]) -> str:
    """Expand $VAR, ${VAR} and ${VAR:-default} the way FROM and COPY do."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name in variables and variables[name] != "":
            return variables[name]
        return match.group("default") or ""

    return _VAR.sub(replace, value)


def parse_env(args: str) -> dict[str, str]:
    words = shlex.split(args, posix=True)
    if words and "=" not in words[0]:
        # legacy form: ENV KEY value with spaces
        return {words[0]: args.split(None, 1)[1].strip() if len(words) > 1 else ""}
    values = {}
    for word in words:
        key, _, value = word.partition("=")
        values[key] = value
    return values


def _parse_arg(args: str) -> tuple[str, str]:
    words = shlex.split(args, posix=True)
    key, _, default = words[0].partition("=")
    return key, default


def parse_copy(instruction: Instruction) -> Copy:
    words = instruction.exec_form()
    flags: dict[str, str] = {}
    if words is None:
        words = instruction.args.split()
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value or "true"
    if len(words) < 2:
        raise ValueError(
            f"line {instruction.line}: {instruction.keyword} needs a source and a dest"
        )
    return Copy(instruction, flags, words[:-1], words[-1])


def parse(path: Path) -> Dockerfile:
    text = path.read_text()
    if re.search(r"<<-?\s*[\"']?[A-Za-z_]", text):
        raise ValueError(f"{path}: heredocs are not supported by this parser")
    instructions = []
    for line, content in logical_lines(text):
        keyword, _, args = content.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), line))

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            image = substitute(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(image=image, name=name))
        elif not stages:
            if instruction.keyword == "ARG":
                key, default = _parse_arg(instruction.args)
                global_args[key] = default
            else:
                raise ValueError(f"line {instruction.line}: {instruction.keyword} before FROM")
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ValueError(f"{path}: no FROM")
    return Dockerfile(instructions, global_args, stages)


def stage_args(stage: Stage, global_args: dict[str, str]) -> dict[str, str]:
    """ARG defaults visible in a stage: redeclared globals take the global default."""
    values: dict[str, str] = {}
    for instruction in stage.of("ARG"):
        key, default = _parse_arg(instruction.args)
        values[key] = default if default or key not in global_args else global_args[key]
    return values
