"""The YAML a job spec or a config is written in, read narrowly and with line numbers.

Only ``true``/``false`` are booleans (``yes``, ``no``, ``on`` and ``off`` stay text), dates stay
text (``parse_bound`` reads them, with its own messages), a key written twice in one mapping is
an error rather than a silent overwrite, and aliases cannot expand a small file into a huge one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from runner.kinds.ids import show_value
from runner.kinds.spec_model import join_path

__all__ = ["MAX_YAML_VALUES", "load_yaml"]

# Aliases can make a small file expand enormously; no real spec has this many values.
MAX_YAML_VALUES = 200_000


_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, dates left as text, and duplicate keys refused."""

    # PyYAML's own class attribute, replaced per subclass the way PyYAML's add_implicit_resolver
    # does; annotating it ClassVar would clash with PyYAML's stubs.
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    # YAML path of each mapping node, set by load_yaml before construction, so a duplicate key
    # is named where it is (``targets[0].where``) as well as by its line.
    paths: dict[int, str] = {}  # noqa: RUF012 (replaced per instance by load_yaml)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Keyed by the key's value, whatever line it is on: a flow mapping
        # (`{created_before: 365d, created_before: 1d}`) holds both on one line.
        seen: dict[Any, tuple[int, yaml.Mark]] = {}
        for index, (key_node, _) in enumerate(node.value):
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first_index, first = seen.setdefault(key, (index, key_node.start_mark))
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be plain text", key_node.start_mark
                ) from None
            if first_index != index:
                where = self.paths.get(id(node))
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{join_path(where, str(key)) + ': ' if where is not None else ''}"
                    f"key {show_value(key)} appears twice in one mapping "
                    f"(first on line {first.line + 1}, column {first.column + 1}); "
                    "keep one of them",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _TooLarge(Exception):
    """The YAML document is too big or recursive to be a spec (alias tricks)."""


def _count_values(root: yaml.Node) -> int:
    """The number of values the document expands to, aliases counted at every use."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _TooLarge("has an alias that refers to a value containing it (recursive alias)")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        if total > MAX_YAML_VALUES:
            raise _TooLarge(f"expands to more than {MAX_YAML_VALUES} values (through aliases)")
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _line_map(root: yaml.Node) -> dict[str, int]:
    """YAML path → 1-based line where it is written, to point messages at the right line."""
    lines: dict[str, int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:
            return  # an alias: its lines are those of the anchor, already recorded
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = join_path(path, str(key_node.value))
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = f"{path}[{index}]"
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child)

    walk(root, "")
    return lines


def _mapping_paths(root: yaml.Node) -> dict[int, str]:
    """id of each mapping node → its YAML path (the root is ``""``), for error messages."""
    paths: dict[int, str] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in paths:
            return  # an alias of a node already named
        if isinstance(node, yaml.MappingNode):
            paths[id(node)] = path
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    walk(value_node, join_path(path, str(key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")

    walk(root, "")
    return paths


def load_yaml(text: str, what: str) -> tuple[object, dict[str, int]]:
    """Parse one YAML document with bulkops' dialect; returns (data, line map).

    Raises ValueError naming the line and column of the first problem; ``what`` names the document
    in that message ("the job spec", "the config file").
    """
    loader: _Loader | None = None
    try:
        # The reader checks characters as soon as it is built, so it belongs inside the try.
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _count_values(node)
        loader.paths = _mapping_paths(node)
        data = loader.construct_document(node)
        return data, _line_map(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ValueError(f"{what} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{what} is not valid YAML: {detail}") from None
    except _TooLarge as exc:
        raise ValueError(f"{what} cannot be used: it {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
