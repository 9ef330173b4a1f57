"""Table tests for bot.parsing: slash-command text and CLI key=value tokens."""

from __future__ import annotations

import pytest

from bot.parsing import CommandSyntaxError, ParsedCommand, parse_command, split_key_values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ParsedCommand("help")),
        ("   \t ", ParsedCommand("help")),
        ("list", ParsedCommand("list")),
        ("RUN Deploy", ParsedCommand("run", ["Deploy"])),
        ("status 42", ParsedCommand("status", ["42"])),
        ("logs 42 build", ParsedCommand("logs", ["42", "build"])),
        ("run deploy env=prod", ParsedCommand("run", ["deploy"], {"env": "prod"})),
        ('run deploy msg="two words"', ParsedCommand("run", ["deploy"], {"msg": "two words"})),
        ("run deploy msg='two words'", ParsedCommand("run", ["deploy"], {"msg": "two words"})),
        ("run 'a b'", ParsedCommand("run", ["a b"])),
        ('run "a b" c', ParsedCommand("run", ["a b", "c"])),
        ("run deploy x=", ParsedCommand("run", ["deploy"], {"x": ""})),
        ('run deploy x=""', ParsedCommand("run", ["deploy"], {"x": ""})),
        ("run deploy a=b=c", ParsedCommand("run", ["deploy"], {"a": "b=c"})),
        ("run deploy x=1 extra", ParsedCommand("run", ["deploy", "extra"], {"x": "1"})),
        ("run deploy _k9=v", ParsedCommand("run", ["deploy"], {"_k9": "v"})),
        ('run deploy "x=1"', ParsedCommand("run", ["deploy", "x=1"])),
        ('run deploy x="a=b"', ParsedCommand("run", ["deploy"], {"x": "a=b"})),
        ('run d m="say \\"hi\\""', ParsedCommand("run", ["d"], {"m": 'say "hi"'})),
        ('run d p="C:\\\\dir"', ParsedCommand("run", ["d"], {"p": "C:\\dir"})),
        ('run d p="a\\nb"', ParsedCommand("run", ["d"], {"p": "a\\nb"})),
        ("run d p=C:\\dir", ParsedCommand("run", ["d"], {"p": "C:\\dir"})),
        ("run d p='a\\'", ParsedCommand("run", ["d"], {"p": "a\\"})),
        ('run d m="it\'s"', ParsedCommand("run", ["d"], {"m": "it's"})),
        ("run d m='say \"hi\"'", ParsedCommand("run", ["d"], {"m": 'say "hi"'})),
        ('run d m=a"b c"d', ParsedCommand("run", ["d"], {"m": "ab cd"})),
        ("run\u00a0d", ParsedCommand("run", ["d"])),
    ],
)
def test_parse_command(text: str, expected: ParsedCommand) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run d msg=\u201ctwo words\u201d", {"msg": "two words"}),
        ("run d msg=\u201dtwo words\u201d", {"msg": "two words"}),
        ("run d msg=\u2018two words\u2019", {"msg": "two words"}),
        ("run d msg=\u201cit\u2019s fine\u201d", {"msg": "it\u2019s fine"}),
        ("run d msg=\u2018say \u201chi\u201d\u2019", {"msg": "say \u201chi\u201d"}),
        ('run d msg="mixed\u201d', {"msg": "mixed"}),
        ("run d msg=don\u2019t", {"msg": "don\u2019t"}),
        ("run d msg=\u2019a b\u2019", {"msg": "\u2019a"}),
    ],
)
def test_smart_quotes_act_as_plain_quotes(text: str, expected: dict[str, str]) -> None:
    assert parse_command(text).params == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run d cmd=x; rm -rf ~", ParsedCommand("run", ["d", "rm", "-rf", "~"], {"cmd": "x;"})),
        ('run d cmd="x; rm -rf ~"', ParsedCommand("run", ["d"], {"cmd": "x; rm -rf ~"})),
        ("run d who=$(id)", ParsedCommand("run", ["d"], {"who": "$(id)"})),
        ('run d who="$(id)"', ParsedCommand("run", ["d"], {"who": "$(id)"})),
        (
            "run d v=`id` h=$HOME g=*",
            ParsedCommand("run", ["d"], {"v": "`id`", "h": "$HOME", "g": "*"}),
        ),
        ("run d p=a|b&&c>d", ParsedCommand("run", ["d"], {"p": "a|b&&c>d"})),
    ],
)
def test_shell_metacharacters_pass_through_verbatim(text: str, expected: ParsedCommand) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run d q=a&amp;b", {"q": "a&b"}),
        ("run d q=&lt;tag&gt;", {"q": "<tag>"}),
        ("run d q=&amp;lt;", {"q": "&lt;"}),
        ("run d q=&quot;", {"q": "&quot;"}),
    ],
)
def test_slack_html_escapes_are_undone(text: str, expected: dict[str, str]) -> None:
    assert parse_command(text).params == expected


@pytest.mark.parametrize(
    ("text", "message_parts"),
    [
        ('run d msg="two words', ['"', "character 11", "never closed"]),
        ("run d msg='two words", ["'", "character 11", "never closed"]),
        ("run d msg=\u201ctwo", ["\u201c", "character 11"]),
        ('run d m="a\\"', ['"', "character 9"]),
        ("run d =value", ["=value", "no parameter name"]),
        ("run d 9x=1", ["9x", "not a valid parameter name", "letters, digits and _"]),
        ("run d my-key=1", ["my-key", "not a valid parameter name"]),
        ('run d "my key"=1', ["my key", "not a valid parameter name"]),
        ("run d x=1 x=2", ["x", "more than once"]),
        ("env=prod run", ["Start with a command", "env=prod"]),
    ],
)
def test_syntax_errors_say_what_is_wrong(text: str, message_parts: list[str]) -> None:
    with pytest.raises(CommandSyntaxError) as err:
        parse_command(text)
    for part in message_parts:
        assert part in str(err.value)


def test_syntax_error_is_a_value_error() -> None:
    assert issubclass(CommandSyntaxError, ValueError)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([], {}),
        (["env=prod"], {"env": "prod"}),
        (["msg=two words", "x="], {"msg": "two words", "x": ""}),
        (["a=b=c"], {"a": "b=c"}),
        (["cmd=x; rm -rf ~", "who=$(id)"], {"cmd": "x; rm -rf ~", "who": "$(id)"}),
        (['q="kept"'], {"q": '"kept"'}),
    ],
)
def test_split_key_values(tokens: list[str], expected: dict[str, str]) -> None:
    assert split_key_values(tokens) == expected


@pytest.mark.parametrize(
    ("tokens", "message_part"),
    [
        (["=v"], "no parameter name"),
        (["1a=v"], "not a valid parameter name"),
        (["a=1", "a=2"], "more than once"),
        (["positional"], "Expected key=value"),
    ],
)
def test_split_key_values_errors(tokens: list[str], message_part: str) -> None:
    with pytest.raises(CommandSyntaxError, match=message_part):
        split_key_values(tokens)


def test_params_keep_the_order_given() -> None:
    assert list(parse_command("run d z=1 a=2 m=3").params) == ["z", "a", "m"]
