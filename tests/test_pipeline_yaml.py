"""Pipeline files are parsed once, by libyaml when PyYAML has it: same result as before.

The loader used to compose the file (for line numbers) and load it again (for
the data) with PyYAML's pure-Python SafeLoader. Now one parse gives both, with
the C loader when available; whatever it reads, the nodes, their lines and the
data must be what the pure-Python loader gives, and a file it would refuse
must still be refused in its words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.pipelines import parse_pipeline
from engine.pipelines.loader import _FAST_LOADER, _load_yaml

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "pipelines").glob("*.yml"))

TEXTS = [
    "name: p\nsteps:\n  - {name: a, run: 'true'}\n",
    "name: p\nparameters:\n  - name: env\n    choices: [dev, prod]\n"
    "steps:\n  - name: Build\n    run: |\n      echo one\n      echo 'two'\n"
    "  - name: Gate\n    approval: {approvers: [U1]}\n",
    "name: p\nsteps:\n  - name: a\n    run: echo ${env}\n    env: {A: '1', B: \"x\\ty\"}\n",
    "name: p\nname: q\nsteps: []\n",  # a key written twice: the last one wins
    "# only a comment\n",
    "",
    "- a\n- b\n",
    "name: caf\u00e9 \U0001f600\nsteps:\n  - {name: \u00e9, run: 'true'}\n",
    "anchors: &x {a: 1}\nuse: *x\nmerged:\n  <<: *x\n  b: 2\n",
    "when: 2024-01-01\ncount: 0x1F\nflag: yes\nnone: ~\n",
    # A merge key: building the data must not rewrite the tree the lines come from.
    "defaults: &d {timeout: 5, env: {A: '1'}}\nname: p\nsteps:\n"
    "  - <<: *d\n    name: a\n    run: 'true'\n    timeout: 10\n",
]
# Texts libyaml would read although PyYAML's own parser refuses them (tabs).
REFUSED_BY_PYYAML = [
    "name: p\nsteps:\n\t- {name: a, run: 'true'}\n",
    "name:\tp\n",
    "name: p\t# comment\n",
    "steps: [a,\tb]\n",
]
BROKEN = [
    "steps: [a, b\n",
    "name: p\n  steps: x\n",
    "a: 1\n---\nb: 2\n",
    "a: *nowhere\n",
    "a: b\x07c\n",
]


def shape(node: yaml.Node | None) -> Any:
    """A node tree as plain values with each node's start line and column."""
    if node is None:
        return None
    where = (node.tag, node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.ScalarNode):
        return (*where, node.value, node.style or "")  # plain: None here, "" from libyaml
    if isinstance(node, yaml.SequenceNode):
        return (*where, [shape(item) for item in node.value])
    assert isinstance(node, yaml.MappingNode)
    return (*where, [(shape(k), shape(v)) for k, v in node.value])


def pure(text: str) -> tuple[Any, Any]:
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.load(text, Loader=yaml.SafeLoader)


def test_pyyaml_here_has_libyaml() -> None:
    # Otherwise the tests below compare the pure loader with itself.
    assert _FAST_LOADER is getattr(yaml, "CSafeLoader", None)


@pytest.mark.parametrize("text", TEXTS + [p.read_text() for p in EXAMPLES])
def test_one_parse_gives_the_nodes_lines_and_data_of_the_pure_loader(text: str) -> None:
    node, data = _load_yaml(text)
    pure_node, pure_data = pure(text)
    assert data == pure_data
    assert shape(node) == shape(pure_node)


@pytest.mark.parametrize("text", REFUSED_BY_PYYAML + BROKEN)
def test_a_file_the_pure_loader_refuses_is_refused_in_its_words(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as expected:
        pure(text)
    with pytest.raises(yaml.YAMLError) as got:
        _load_yaml(text)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_a_tab_is_still_reported_with_its_line_and_the_hint() -> None:
    _, problems = parse_pipeline("name: p\nsteps:\n\t- {name: a, run: 'true'}\n", Path("p.yml"))
    assert [str(p) for p in problems] == [
        "p.yml:3: YAML syntax error: found character '\\t' that cannot start any token "
        "(indent with spaces, not tabs)"
    ]


def test_duplicate_keys_are_still_found_on_their_lines() -> None:
    _, problems = parse_pipeline(
        "name: p\nsteps:\n  - {name: a, run: 'true'}\nname: q\n", Path("p.yml")
    )
    assert [str(p) for p in problems] == [
        "p.yml:4: key `name` is written twice (also on line 1); keep one"
    ]


def test_a_merge_key_is_not_taken_for_a_key_written_twice() -> None:
    text = (
        "x-defaults: &d {timeout: 5}\nname: p\nsteps:\n"
        "  - <<: *d\n    name: a\n    run: 'true'\n    timeout: 10\n"
    )
    _, problems = parse_pipeline(text, Path("p.yml"))
    assert not any("written twice" in str(p) for p in problems), problems
