"""Read YAML into a mapping, every failure as one clear line of the caller's error type.

Stricter than `yaml.safe_load`: a repeated key is an error (PyYAML keeps the last one silently, so a
typo'd override would be lost), text must be UTF-8, and a file past MAX_BYTES or nested past Python's
recursion limit is refused instead of raising from deep inside the parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a spec is a page of settings; more is a wrong file (or /dev/zero)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (merge keys `<<` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _where(problem: yaml.YAMLError) -> str:
    mark = getattr(problem, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def parse_mapping(text: str, source: str, error: type[Exception], *, empty_ok: bool = True) -> dict[str, Any]:
    """The top-level mapping of YAML `text`; `source` names it in messages ("spec specs/x.yaml")."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as problem:
        reason = getattr(problem, "problem", None) or str(problem).splitlines()[0]
        raise error(f"{source} is not valid YAML: {reason}{_where(problem)}") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply to read") from None
    if data is None:
        if not empty_ok:
            raise error(f"{source} is empty: it sets nothing (write `{{}}` to run on defaults)")
        return {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping, got {type(data).__name__}")
    return data


def read_text(path: str | Path, what: str, error: type[Exception]) -> str:
    """The file as UTF-8 text (a BOM is allowed), at most MAX_BYTES."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as problem:
        raise error(f"cannot read {what} {path}: {problem.strerror or problem}") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{what} {path} is larger than {MAX_BYTES // 1024} KiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{raw[problem.start]:02x} at offset "
                    f"{problem.start})") from None


def read_mapping(path: str | Path, what: str, error: type[Exception], *, empty_ok: bool = True) -> dict[str, Any]:
    """The file's top-level mapping; `what` names the file in messages ("spec"). Empty: {} if `empty_ok`."""
    return parse_mapping(read_text(path, what, error), f"{what} {path}", error, empty_ok=empty_ok)
