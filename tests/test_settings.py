from __future__ import annotations

import pytest

from ansflow.settings import SettingsError, load_settings


def test_defaults_need_no_settings() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite://ansflow.db"
    assert str(settings.pipelines_dir) == "pipelines"
    assert (settings.host, settings.port, settings.poll_interval) == ("127.0.0.1", 3000, 5.0)
    assert not settings.slack_enabled
    assert settings.admins == frozenset()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANSFLOW_PORT": "http"}, "invalid setting ANSFLOW_PORT: Input should be a valid integer"),
        ({"ANSFLOW_PORT": "70000"}, "invalid setting ANSFLOW_PORT: Input should be less than"),
        ({"ANSFLOW_POLL_INTERVAL": "0"}, "invalid setting ANSFLOW_POLL_INTERVAL: Input should be"),
        ({"ANSFLOW_DATABASE_URL": "mysql://x"}, "invalid setting ANSFLOW_DATABASE_URL: must start"),
        ({"SLACK_APP_TOKEN": "xoxb-1"}, "invalid setting SLACK_APP_TOKEN: must be an app-level"),
        ({"JENKINS_URL": "jenkins.local"}, "invalid setting JENKINS_URL: must be an http"),
        ({"ANSFLOW_ADMINS": "U1,<script>"}, "invalid setting ANSFLOW_ADMINS:"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    text = str(error.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_secret_values_include_every_token_and_the_db_password() -> None:
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-bot-secret",
            "SLACK_SIGNING_SECRET": "signing-secret",
            "ANSFLOW_JWT_SECRET": "jwt-secret-value",
            "JENKINS_API_TOKEN": "jenkins-token",
            "ANSFLOW_DATABASE_URL": "postgres://u:db-pass-word@127.0.0.1:5432/x",
            "ANSFLOW_ADMINS": "U1, U2",
        }
    )
    assert set(settings.secret_values()) == {
        "xoxb-bot-secret",
        "signing-secret",
        "jwt-secret-value",
        "jenkins-token",
        "db-pass-word",
    }
    assert settings.admins == {"U1", "U2"}
    assert "xoxb-bot-secret" not in repr(settings)
