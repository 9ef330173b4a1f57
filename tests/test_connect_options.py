"""Connections of their own (the replicas' listener, the migration lock) connect as the pool does."""

from __future__ import annotations

import pytest

from storage.db import connect_options


def test_a_socket_folder_and_the_pools_options() -> None:
    options = connect_options(
        "postgres://ansflow:p%40ss@:5433/ansflow?host=/run/postgresql&maxsize=3&minsize=2"
    )
    assert options == {
        "host": "/run/postgresql",
        "port": 5433,
        "user": "ansflow",
        "password": "p@ss",
        "database": "ansflow",
    }


def test_tls_and_the_application_name_reach_it_as_they_reach_the_pool() -> None:
    options = connect_options(
        "postgresql://ansflow:pw@db.internal/ansflow?ssl=true&application_name=ansflow-a"
    )
    assert options["host"] == "db.internal" and options["port"] == 5432
    assert options["ssl"] is True
    assert options["server_settings"] == {"application_name": "ansflow-a"}


def test_libpqs_sslmode_is_taken_as_the_pool_takes_it() -> None:
    assert connect_options("postgres://a:b@db/ansflow?sslmode=verify-full")["ssl"] == "verify-full"


@pytest.mark.parametrize(
    ("given", "ssl"), [("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_ssl_false_means_no_tls(given: str, ssl: bool) -> None:
    assert connect_options(f"postgres://a:b@db/ansflow?ssl={given}")["ssl"] is ssl


def test_not_postgres() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        connect_options("sqlite://ansflow.db")
