"""The round-trip benchmark counts what PostgreSQL's statement log says it received."""

from __future__ import annotations

from bench.bench_round_trips import count_statements

LOG = """\
2026-12-01 23:25:54.664 UTC [1706] LOG:  statement: BEGIN;
2026-12-01 23:25:54.665 UTC [1706] LOG:  execute __asyncpg_stmt_13__: INSERT INTO "run" ("pipeline") VALUES ($1) RETURNING "id"
2026-12-01 23:25:54.665 UTC [1706] DETAIL:  parameters: $1 = 'quick'
2026-12-01 23:25:54.666 UTC [1706] LOG:  execute __asyncpg_stmt_15__: UPDATE "step_run" SET "status"=$1 WHERE "id"=$2
2026-12-01 23:25:54.667 UTC [1706] LOG:  execute __asyncpg_stmt_16__: SELECT pg_notify($1, $2), pg_notify($1, $3)
2026-12-01 23:25:54.667 UTC [1706] LOG:  execute __asyncpg_stmt_17__: WITH w0 AS (UPDATE "step_run" SET "status"=$1 WHERE "id"=$2 RETURNING 1) SELECT (SELECT count(*) FROM w0), pg_notify($3, $4)
2026-12-01 23:25:54.667 UTC [1706] LOG:  statement: COMMIT;
2026-12-01 23:25:55.675 UTC [1706] LOG:  execute __asyncpg_stmt_a__: SELECT clock_timestamp() AS t
2026-12-01 23:25:55.676 UTC [1706] LOG:  execute __asyncpg_stmt_1a__: UPDATE "replica" SET "lease_until"=$1 WHERE "id"=$2
2026-12-01 23:25:55.682 UTC [1706] LOG:  execute __asyncpg_stmt_1c__: UPDATE "lease" SET "expires_at"=$1 WHERE "owner"=$2
2026-12-01 23:25:55.684 UTC [1707] LOG:  execute __asyncpg_stmt_3__: SELECT p."id" FROM "run" p WHERE p."id"=$1
2026-12-01 23:25:55.685 UTC [1707] LOG:  execute __asyncpg_stmt_4__: WITH g0 AS (SELECT 1 FROM "step_run" WHERE "id"=$1 FOR UPDATE) SELECT 1
2026-12-01 23:25:55.690 UTC [1706] LOG:  checkpoint starting: time
"""


def test_statements_are_counted_by_kind_and_heartbeats_are_left_out() -> None:
    counted = count_statements(LOG)
    assert dict(counted) == {
        "BEGIN": 1,
        "INSERT": 1,
        "UPDATE": 1,
        "pg_notify": 1,
        "WITH": 2,
        "SELECT": 1,
        "COMMIT": 1,
        # The COMMIT, and the write another backend sent outside a transaction.
        "commits": 2,
    }
