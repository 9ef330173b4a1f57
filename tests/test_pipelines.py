from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidParameter
from engine.params import resolve_parameters
from engine.pipelines import load_catalog, parse_pipeline
from engine.pipelines.schema import ApprovalSpec, JenkinsSpec, ParallelSpec, RunSpec, json_schema

GOOD = """\
name: deploy-web
description: Build, test and deploy the web app
channel: C0123456
allowed_users: [U111, U222]
allowed_channels: [C0123456]
parameters:
  version:
    default: "1.0"
    description: Version to deploy
    pattern: '^[0-9.]+$'
  env:
    choices: [staging, production]
    required: true
steps:
  - name: Build
    run: ./build.sh "$version"
    timeout: 600
    env: {CI: "true"}
  - parallel:
      - name: Unit tests
        run: make test
      - name: Lint
        run: make lint
  - name: Approve production
    approval:
      approvers: [U222, U333]
      required: 1
      allow_self_approval: false
      timeout: 3600
  - name: Deploy
    jenkins:
      tool: jenkins
      job: deploy-web
      parameters: {VERSION: "${version}", ENV: "${env}"}
"""


def parse(text: str) -> tuple[object, list[str]]:
    pipeline, problems = parse_pipeline(text, Path("p.yml"))
    return pipeline, [str(p) for p in problems]


def test_the_interface_example_loads_with_every_kind() -> None:
    pipeline, problems = parse(GOOD)
    assert problems == []
    assert pipeline is not None
    kinds = [type(s) for s in pipeline.steps]  # type: ignore[attr-defined]
    assert kinds == [RunSpec, ParallelSpec, ApprovalSpec, JenkinsSpec]
    paths = [path for path, _ in pipeline.leaves()]  # type: ignore[attr-defined]
    assert paths == ["0", "1.0", "1.1", "2", "3"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: x\nsteps:\n  - name: a\n    run: [unclosed\n", 5, "YAML syntax error"),
        ("name: x\nsteps:\n  - name: a\n    run: echo\n    jenkins: {job: j}\n", 3,
         "exactly one kind, this one has run and jenkins"),
        ("name: x\nsteps:\n  - name: a\n    run: echo\n    timeout: -1\n", 5,
         "greater than 0"),
        ("name: x\nsteps:\n  - name: a\n", 3, "needs one of: run, parallel, approval, jenkins"),
        ("name: bad name!\nsteps:\n  - {name: a, run: echo}\n", 1, "name"),
        ("name: x\nsteps: []\n", 2, "at least 1"),
        ("name: x\nparameters:\n  1bad: {}\nsteps:\n  - {name: a, run: echo}\n", 3,
         "not an identifier"),
        ("name: x\nparameters:\n  PATH: {}\nsteps:\n  - {name: a, run: echo}\n", 3, "reserved"),
        ("name: x\nsteps:\n  - {name: a, run: echo}\n  - {name: a, run: echo}\n", 3,
         "two steps are named 'a'"),
        ("name: x\nparameters:\n  e: {choices: [a, b], default: c}\nsteps:\n  - {name: a, run: x}\n",
         3, "not one of the choices"),
        ("name: x\nparameters:\n  e: {pattern: '('}\nsteps:\n  - {name: a, run: x}\n",
         3, "not a valid regular expression"),
        ("name: x\nsteps:\n  - name: a\n    approval: {approvers: [U1], required: 2}\n", 4,
         "required is 2 but only 1 approvers"),
        ("name: x\nsteps:\n  - name: a\n    run: x\n    colour: red\n", 5, "colour"),
        ("- just\n- a list\n", 1, "one mapping"),
    ],
)
def test_invalid_files_name_the_line_and_the_problem(text: str, line: int, fragment: str) -> None:
    pipeline, problems = parse(text)
    assert pipeline is None
    assert problems, "an invalid file must report a problem"
    assert any(p.startswith(f"p.yml:{line}:") and fragment in p for p in problems), problems


def test_a_bad_file_is_skipped_and_the_others_load(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text("name: bad\nsteps: [\n")
    (tmp_path / "notes.txt").write_text("not a pipeline")
    catalog = load_catalog(tmp_path)
    assert list(catalog.pipelines) == ["deploy-web"]
    assert len(catalog.problems) == 1
    assert "bad.yaml" in str(catalog.problems[0])


def test_duplicate_pipeline_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("name: same\nsteps:\n  - {name: s, run: echo a}\n")
    (tmp_path / "b.yml").write_text("name: same\nsteps:\n  - {name: s, run: echo b}\n")
    catalog = load_catalog(tmp_path)
    assert catalog.sources["same"].name == "a.yml"
    assert [str(p) for p in catalog.problems] == [
        f"{tmp_path / 'b.yml'}:1: duplicate pipeline name 'same' (also in {tmp_path / 'a.yml'})"
    ]


def _deploy():  # type: ignore[no-untyped-def]
    pipeline, _ = parse_pipeline(GOOD, Path("p.yml"))
    assert pipeline is not None
    return pipeline


def test_parameters_get_defaults_and_keep_values_verbatim() -> None:
    got = resolve_parameters(_deploy(), {"env": "staging"})
    assert got == {"version": "1.0", "env": "staging"}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "Missing required parameter `env`"),
        ({"env": "prod"}, "`env` must be one of staging, production (got 'prod')."),
        ({"env": "staging", "version": "$(id)"}, "`version` must match ^[0-9.]+$"),
        ({"env": "staging", "colour": "red"}, "Unknown parameter colour for `deploy-web`"),
    ],
)
def test_bad_parameters_say_what_is_valid(given: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidParameter) as error:
        resolve_parameters(_deploy(), given)
    assert message in str(error.value)


def test_json_schema_describes_every_step_kind() -> None:
    schema = json_schema()
    text = str(schema)
    for kind in ("RunSpec", "ParallelSpec", "ApprovalSpec", "JenkinsSpec"):
        assert kind in text
    assert schema["title"] == "AnsFlow pipeline"
