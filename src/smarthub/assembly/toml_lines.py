"""Where a value sits in a TOML file: the line of a key path such as ``meters[2].transport.baud``.

``tomllib`` parses to plain dicts and forgets positions, and a configuration error that does not
name its line sends the user hunting. This scanner walks the text once, line by line, tracking
the table headers (``[a.b]``, ``[[a]]`` with their array index) and the keys assigned under them
(also dotted keys and the keys of one-line inline tables), and records the line of each key
path. It is not a TOML parser: the file has already been parsed by ``tomllib``, so it may assume
valid TOML and only has to skip what can span lines (multi-line strings and arrays).
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_KEY})\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(rf"{_BARE}|{_QUOTED}", text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _strip_strings(line: str) -> str:
    """The line with its string literals blanked (brackets inside strings do not count)."""
    return re.sub(_QUOTED, '""', line)


class LineIndex:
    """Key path → line number (1-based) for one TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self._arrays: dict[tuple[str, ...], int] = {}
        table: Path = ()
        depth = 0  # open brackets of a multi-line array or inline value
        in_string: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if in_string in raw:
                    in_string = None
                continue
            if depth:
                depth += self._balance(raw)
                continue
            header = _HEADER.match(raw)
            if header:
                keys = _split_key(header.group(2))
                if header.group(1) == "[[":
                    index = self._arrays.get(keys, -1) + 1
                    self._arrays[keys] = index
                    table = (*self._resolve(keys[:-1]), keys[-1], index)
                else:
                    table = self._resolve(keys)
                self.lines.setdefault(table, number)
                continue
            assign = _ASSIGN.match(raw)
            if not assign:
                continue
            path = (*table, *_split_key(assign.group(1)))
            self.lines.setdefault(path, number)
            value = raw[assign.end() :]
            for quote in ('"""', "'''"):
                if value.count(quote) == 1:
                    in_string = quote
            if value.lstrip().startswith("{"):
                for m in _INLINE_KEY.finditer(_strip_strings(value)):
                    self.lines.setdefault((*path, *_split_key(m.group(1))), number)
            depth = max(0, self._balance(value))

    @staticmethod
    def _balance(text: str) -> int:
        code = _strip_strings(text).split("#", 1)[0]
        return code.count("[") + code.count("{") - code.count("]") - code.count("}")

    def _resolve(self, keys: tuple[str, ...]) -> Path:
        """A header's path, with the current index of every array of tables it passes through."""
        out: list[str | int] = []
        for i, k in enumerate(keys):
            out.append(k)
            prefix = keys[: i + 1]
            if prefix in self._arrays:
                out.append(self._arrays[prefix])
        return tuple(out)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest enclosing key or table that has one."""
        for n in range(len(path), 0, -1):
            found = self.lines.get(path[:n])
            if found is not None:
                return found
        return None


def dotted(path: Path) -> str:
    """``("meters", 2, "transport", "baud")`` → ``meters[2].transport.baud``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out
