"""Pipeline file problems in plain words: each names the line, what is wrong and what is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.catalog import PipelineSource
from engine.errors import PipelineNotFound
from engine.pipelines import load_catalog, parse_pipeline
from engine.pipelines.keys import allowed_keys
from engine.pipelines.messages import describe, missing_folder, predicate
from engine.pipelines.references import undeclared_references

RUN_KEYS = "name, run, timeout, env, retry_on_restart"


def problems_of(text: str) -> list[str]:
    pipeline, problems = parse_pipeline(text, Path("p.yml"))
    assert pipeline is None
    return [str(p) for p in problems]


@pytest.mark.parametrize(
    ("error", "path", "expected"),
    [
        ({"type": "float_parsing"}, ("timeout",), "must be a number of seconds, e.g. 600"),
        ({"type": "float_type"}, ("timeout",), "must be a number of seconds, e.g. 600"),
        (
            {"type": "greater_than", "ctx": {"gt": 0.0}},
            ("timeout",),
            "must be a number of seconds more than 0, e.g. 600",
        ),
        (
            {"type": "less_than_equal", "ctx": {"le": 604800.0}},
            ("timeout",),
            "must be at most 604800 seconds (7 days)",
        ),
        ({"type": "string_type", "input": ["a"]}, ("run",), "must be text, not a list"),
        ({"type": "string_type", "input": {"a": 1}}, ("run",), "must be text, not a mapping"),
        ({"type": "string_type", "input": None}, ("run",), "must be text (it is empty)"),
        ({"type": "string_type", "input": 5}, ("run",), "must be text (put it in quotes)"),
        ({"type": "string_too_short", "ctx": {"min_length": 1}}, ("run",), "must not be empty"),
        (
            {"type": "string_too_long", "ctx": {"max_length": 80}},
            ("name",),
            "must be at most 80 characters long",
        ),
        ({"type": "int_parsing"}, ("required",), "must be a whole number"),
        ({"type": "bool_parsing"}, ("required",), "must be true or false"),
        ({"type": "list_type"}, ("approvers",), "must be a list, e.g. [a, b]"),
        ({"type": "dict_type"}, ("env",), "must be a mapping of keys to values (key: value)"),
        (
            {"type": "too_short", "ctx": {"min_length": 1}},
            ("steps",),
            "must list at least one step",
        ),
        (
            {"type": "too_short", "ctx": {"min_length": 1}},
            ("approvers",),
            "must list at least one approver",
        ),
        ({"type": "greater_than_equal", "ctx": {"ge": 1}}, ("required",), "must be at least 1"),
        (
            {"type": "literal_error", "ctx": {"expected": "'queue'"}},
            ("mode",),
            "must be one of 'queue'",
        ),
        (
            {"type": "string_pattern_mismatch", "ctx": {"pattern": r"^[A-Z0-9][A-Z0-9_]*$"}},
            ("channel",),
            "must be a Slack id such as U0123ABCD or C0123ABCD (capital letters and digits)",
        ),
        (
            {"type": "string_pattern_mismatch", "ctx": {"pattern": "^x+$"}},
            ("tag",),
            "must match the pattern ^x+$",
        ),
        (
            {"type": "some_new_type", "msg": "Input should be a valid colour"},
            ("colour",),
            "must be a valid colour",
        ),
    ],
)
def test_pydantic_error_types_become_plain_sentences(
    error: dict[str, Any], path: tuple[str, ...], expected: str
) -> None:
    assert predicate(error, path) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "missing", "loc": ("steps",)}, "`steps` is required"),
        (
            {"type": "missing", "loc": ("steps", 0, "approval", "approval", "approvers")},
            "step 1 (Build): `approval.approvers` is required",
        ),
        (
            {"type": "float_parsing", "loc": ("steps", 0, "run", "timeout")},
            "step 1 (Build): timeout must be a number of seconds, e.g. 600",
        ),
        (
            {
                "type": "string_type",
                "loc": ("steps", 1, "parallel", "parallel", 1, "run", "run"),
                "input": 3,
            },
            "step 2, parallel step 2 (Lint): run must be text (put it in quotes)",
        ),
        (
            {"type": "extra_forbidden", "loc": ("steps", 0, "run", "timout")},
            f"unknown key `timout` in step 1 (Build); did you mean `timeout`? allowed: {RUN_KEYS}",
        ),
        (
            {
                "type": "value_error",
                "loc": ("parameters", "env"),
                "msg": "Value error, bad default",
            },
            "parameter `env`: bad default",
        ),
        (
            {"type": "bool_parsing", "loc": ("parameters", "env", "required")},
            "parameter `env`: required must be true or false",
        ),
    ],
)
def test_each_error_names_its_place(error: dict[str, Any], expected: str) -> None:
    data = {
        "steps": [
            {"name": "Build", "run": "make"},
            {"parallel": [{"name": "Unit", "run": "t"}, {"name": "Lint", "run": "l"}]},
        ],
        "parameters": {"env": {}},
    }
    assert describe(error, data)[1] == expected


def test_the_typo_in_a_step_names_the_closest_key_and_all_allowed_ones() -> None:
    text = "name: x\nsteps:\n  - name: Build\n    run: make\n    timout: 5\n"
    assert problems_of(text) == [
        f"p.yml:5: unknown key `timout` in step 1 (Build); did you mean `timeout`? "
        f"allowed: {RUN_KEYS}"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nstesp:\n  - {name: a, run: x}\n",
            [
                "p.yml:1: `steps` is required",
                "p.yml:2: unknown key `stesp` in the pipeline; did you mean `steps`? allowed: "
                "name, description, channel, allowed_users, allowed_channels, parameters, env, "
                "timeout, steps, schedule, triggers, concurrency",
            ],
        ),
        (
            "name: x\nsteps:\n  - name: ok\n    approval: {approvers: [U1], aprovers: [U2]}\n",
            [
                "p.yml:4: unknown key `aprovers` in step 1 (ok) under `approval`; did you mean "
                "`approvers`? allowed: approvers, required, allow_self_approval, timeout",
            ],
        ),
        (
            "name: x\nparameters:\n  v: {defualt: '1'}\nsteps:\n  - {name: a, run: x}\n",
            [
                "p.yml:3: unknown key `defualt` in parameter `v`; did you mean `default`? "
                "allowed: default, required, choices, pattern, description",
            ],
        ),
        (
            "name: x\nsteps:\n  - parallel:\n      - name: Lint\n        run: x\n        zzz: 1\n",
            [f"p.yml:6: unknown key `zzz` in step 1, parallel step 1 (Lint); allowed: {RUN_KEYS}"],
        ),
        (
            "name: x\nsteps:\n  - name: a\n    rn: echo\n",
            [
                "p.yml:3: step 1 (a): a step needs one of: run, parallel, approval, jenkins; "
                "did you mean `run` instead of `rn`?"
            ],
        ),
        (
            "name: x\nsteps:\n  - name: a\n    run: x\n    run: y\n",
            ["p.yml:5: key `run` is written twice (also on line 4); keep one"],
        ),
        (
            "name: x\nsteps:\n\t- {name: a, run: x}\n",
            [
                "p.yml:3: YAML syntax error: found character '\\t' that cannot start any token "
                "(indent with spaces, not tabs)"
            ],
        ),
        (
            "name: x\nsteps:\n  - 7\n",
            [
                "p.yml:3: step 1 must be a mapping: name:, then one of run:, parallel:, "
                "approval:, jenkins:"
            ],
        ),
    ],
)
def test_files_with_mistakes_report_every_one_by_line(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_allowed_keys_are_read_from_the_schema_at_each_place() -> None:
    assert allowed_keys(("steps", 0, "jenkins")) == ["name", "jenkins", "timeout"]
    assert allowed_keys(("steps", 0, "jenkins", "jenkins")) == ["tool", "job", "parameters"]
    assert allowed_keys(("steps", 0, "parallel", "parallel", 0, "run")) == RUN_KEYS.split(", ")
    assert allowed_keys(("steps", 0, "nosuch")) is None


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("${version}", ["version"], []),
        ("v${version}-${env}", ["version"], ["env"]),
        ("${a}${a}${b}", [], ["a", "b"]),
        ("${ version }", ["version"], [" version "]),
        ("$version and ${}", ["version"], [""]),
        ("no references", [], []),
    ],
)
def test_undeclared_references(text: str, declared: list[str], expected: list[str]) -> None:
    assert undeclared_references(text, declared) == expected


JENKINS = """\
name: deploy
parameters:
  version: {default: "1"}
  env: {default: staging}
steps:
  - name: Deploy
    jenkins:
      job: deploy
      parameters:
        VERSION: "${version}"
        ENV: "${enviroment}"
"""


def test_an_undeclared_jenkins_reference_is_an_error_naming_it_and_the_declared_ones() -> None:
    assert problems_of(JENKINS) == [
        "p.yml:11: step 1 (Deploy): Jenkins parameter ENV uses `${enviroment}`, but the "
        "pipeline declares no parameter `enviroment`; declared: version, env"
    ]
    text = JENKINS.replace("${enviroment}", "${verison}")
    assert problems_of(text)[0].endswith("did you mean `${version}`? declared: version, env")


def test_a_reference_in_a_file_without_parameters_says_none_are_declared() -> None:
    text = "name: d\nsteps:\n  - name: D\n    jenkins: {job: d, parameters: {V: '${v}'}}\n"
    assert problems_of(text) == [
        "p.yml:4: step 1 (D): Jenkins parameter V uses `${v}`, but the pipeline declares no "
        "parameter `v`; it declares no parameters (add them under `parameters:`)"
    ]


def test_references_are_checked_in_a_file_with_other_errors_too() -> None:
    text = JENKINS.replace("job: deploy", "job: /deploy")
    assert problems_of(text) == [
        "p.yml:8: step 1 (Deploy): jenkins.job must be a Jenkins job name, with folders as a/b/c",
        "p.yml:11: step 1 (Deploy): Jenkins parameter ENV uses `${enviroment}`, but the "
        "pipeline declares no parameter `enviroment`; declared: version, env",
    ]


def test_an_undeclared_reference_in_the_concurrency_group_is_an_error() -> None:
    text = (
        "name: d\nparameters:\n  env: {}\nconcurrency:\n  group: 'deploy-${enviro}'\n"
        "steps:\n  - {name: a, run: x}\n"
    )
    assert (
        "p.yml:5: the concurrency group uses `${enviro}`, but the pipeline declares no "
        "parameter `enviro`; did you mean `${env}`? declared: env"
    ) in problems_of(text)
    _, problems = parse_pipeline(text.replace("enviro", "env"), Path("p.yml"))
    assert not any("concurrency group uses" in str(p) for p in problems)


def test_duplicate_names_are_reported_when_the_later_file_has_other_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("name: same\nsteps:\n  - {name: s, run: echo a}\n")
    (tmp_path / "b.yml").write_text("description: b\nname: same\nsteps:\n  - {name: s}\n")
    catalog = load_catalog(tmp_path)
    assert list(catalog.pipelines) == ["same"]
    assert catalog.sources["same"] == tmp_path / "a.yml"
    assert [str(p) for p in catalog.problems] == [
        f"{tmp_path / 'b.yml'}:4: step 1 (s): a step needs one of: run, parallel, approval, "
        "jenkins",
        f"{tmp_path / 'b.yml'}:2: duplicate pipeline name `same`: {tmp_path / 'a.yml'} already "
        "uses it; each pipeline needs a name of its own",
    ]


def test_the_first_file_keeps_its_name_even_when_it_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("name: same\nsteps: []\n")
    (tmp_path / "b.yml").write_text("name: same\nsteps:\n  - {name: s, run: echo b}\n")
    catalog = load_catalog(tmp_path)
    assert catalog.pipelines == {}
    assert [str(p) for p in catalog.problems] == [
        f"{tmp_path / 'a.yml'}:2: steps must list at least one step",
        f"{tmp_path / 'b.yml'}:1: duplicate pipeline name `same`: {tmp_path / 'a.yml'} already "
        "uses it; each pipeline needs a name of its own",
    ]


def test_a_missing_folder_is_named_with_the_setting(tmp_path: Path) -> None:
    folder = tmp_path / "nope"
    catalog = load_catalog(folder)
    assert catalog.pipelines == {}
    assert [str(p) for p in catalog.problems] == [
        f"{folder}: pipelines folder {folder} does not exist: no pipelines are loaded; "
        "create it or set ANSFLOW_PIPELINES_DIR to the folder of pipeline files"
    ]
    folder.write_text("a file")
    assert "is not a folder" in missing_folder(folder)
    assert f"(that is {Path.cwd() / 'pipelines'})" in missing_folder(Path("pipelines"))


def test_an_unknown_pipeline_carries_close_matches_and_every_name(tmp_path: Path) -> None:
    for name in ("deploy-web", "deploy-api", "backup"):
        (tmp_path / f"{name}.yml").write_text(f"name: {name}\nsteps:\n  - {{name: s, run: x}}\n")
    source = PipelineSource(tmp_path)
    with pytest.raises(PipelineNotFound) as typo:
        source.get("deploy-wbe")
    assert typo.value.close_matches == ["deploy-web", "deploy-api"]
    assert typo.value.available == ["backup", "deploy-api", "deploy-web"]
    assert str(typo.value) == (
        "There is no pipeline named `deploy-wbe`. Did you mean deploy-web, deploy-api?"
    )
    with pytest.raises(PipelineNotFound) as part:
        source.get("web")
    assert part.value.close_matches == ["deploy-web"]
    with pytest.raises(PipelineNotFound) as case:
        source.get("Backup")
    assert case.value.close_matches == ["backup"]
    with pytest.raises(PipelineNotFound) as nothing:
        source.get("zzz")
    assert nothing.value.close_matches == []
    assert str(nothing.value) == "There is no pipeline named `zzz`."
    assert nothing.value.available == ["backup", "deploy-api", "deploy-web"]
