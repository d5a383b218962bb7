"""YAML as miakit reads it from a config file, a run's run.yaml or a `--set` value: PyYAML's safe
loader (no tags that build objects), plus three refusals that name the source, each made before
any object is built:

- text that is not UTF-8 (a binary or random file given as a config);
- a key given twice in one mapping (PyYAML keeps the last silently), named by its key path;
- a document whose aliases expand to more than `MAX_NODES` nodes (the "billion laughs": a few
  nested anchors that stand for billions of values; PyYAML builds them as shared objects at
  once, but validating or printing them walks every copy), and nesting deeper than
  `MAX_DEPTH`.

The expanded size is counted on the composed node graph with one visit per distinct node, so
refusing a bomb costs about as much as reading its text.
"""

from __future__ import annotations

from typing import Any

import yaml

from miakit.errors import MiakitError

#: Nodes a document may stand for once its aliases are expanded (a full audit config has a few
#: hundred).
MAX_NODES = 100_000
#: How deeply mappings and lists may nest.
MAX_DEPTH = 64


def read_yaml(text: str | bytes, source: str) -> Any:
    """The value of one YAML document (None for an empty one); MiakitError naming `source` for
    text that is not UTF-8, invalid YAML, a duplicate key, or a document too large once its
    aliases are expanded (module docstring)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MiakitError(
                f"{source} is not UTF-8 text (byte {text[exc.start]:#04x} at offset {exc.start}):"
                " a config is a YAML file"
            ) from None
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise MiakitError(f"{source}: YAML nested too deeply") from None
        except yaml.YAMLError as exc:
            raise MiakitError(f"{source} is not valid YAML: {exc}") from exc
        if node is None:
            return None
        _check(node, source)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise MiakitError(f"{source} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _check(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys and documents too large or deep (module docstring): each distinct
    node is visited once, its expanded size memoised by identity."""
    sizes: dict[int, int] = {}
    # an explicit stack, (node, key path, depth, children pushed?), so deep nesting cannot
    # exhaust Python's recursion limit
    stack: list[tuple[yaml.Node, str, int, bool]] = [(root, "", 0, False)]
    while stack:
        node, path, depth, expanded = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_DEPTH:
            top = path.split(".")[0].split("[")[0] or "the document"
            raise MiakitError(f"{source}: {top} nests deeper than {MAX_DEPTH} levels")
        children = _children(node, path, source)
        if not expanded and children:
            stack.append((node, path, depth, True))
            stack.extend((child, where, depth + 1, False) for child, where in children)
            continue
        size = 1 + sum(sizes.get(id(child), 0) for child, _ in children)
        if size > MAX_NODES:
            raise MiakitError(
                f"{source}: {path or 'the document'} expands to more than {MAX_NODES:,} values "
                "(anchors and aliases nested into an exponential document); a config is a few "
                "hundred"
            )
        sizes[id(node)] = size


def _children(node: yaml.Node, path: str, source: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(child, f"{path}[{i}]") for i, child in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: set[str] = set()
    children = []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges, not a key
                children.append((value, path))
                continue
            where = f"{path}.{key.value}" if path else key.value
            if key.value in seen:
                raise MiakitError(
                    f"{source}: {where} is given twice (line {key.start_mark.line + 1}); "
                    "YAML would keep the last silently: give each key once"
                )
            seen.add(key.value)
        else:
            where = f"{path}.<key>"
            children.append((key, where))
        children.append((value, where))
    return children
