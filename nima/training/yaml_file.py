"""Reading a YAML configuration file strictly: a regular file of UTF-8 text, without aliases or
duplicated keys, every problem one line naming the file and the place.

PyYAML's `safe_load` constructs no Python objects but plain ones, yet it accepts two things a
configuration does not need and that hurt when they come: *aliases* (`*name`, and `<<: *name`
merges), with which a few hundred bytes describe a structure of billions of elements — an
"alias bomb" whose error message alone would fill the memory — and *duplicated keys*, of which
it silently keeps the last. `StrictLoader` refuses both while it composes the document, before
anything large is built.

```python
>>> read_yaml("configs/shakespeare_char.yaml")["model"]["n_layer"]
4
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

__all__ = ["StrictLoader", "YAMLFileError", "read_yaml"]


class YAMLFileError(ValueError):
    """A configuration file that cannot be read: not a regular file, not UTF-8, not YAML, or
    YAML with an alias or a duplicated key; the message names the file and the line."""


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases and duplicated keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConstructorError(None, None, f"an alias (*{str(event.anchor)[:40]}) — Nima's "
                                   f"configs do not use anchors and aliases; write the value "
                                   f"out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key; SafeLoader says so below
                continue
            if first is not key_node.start_mark:
                raise ConstructorError(None, None, f"the key {str(key)[:40]!r} appears twice "
                                       f"(first on line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """The document of the YAML file `path`, read with `StrictLoader`.

    Raises:
        YAMLFileError: the file is not a regular file, is not UTF-8, is not valid YAML, or
            holds an alias or a duplicated key.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO or /dev/zero would block or never end
        raise YAMLFileError(f"{path}: not a regular file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise YAMLFileError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                            f"save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: plain objects only
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise YAMLFileError(f"{path}: {where}not valid YAML: {problem}") from None
    except ValueError as e:  # a number PyYAML cannot convert (an int of 5,000 digits)
        raise YAMLFileError(f"{path}: not a usable YAML file: {str(e)[:80]}") from None
