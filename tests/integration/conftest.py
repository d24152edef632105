"""Shared fixtures: the listener TLS/AUTH ones, the private PostgreSQL clusters and a
store factory for both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.quarantine import QuarantineStore, SqliteStore
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_conn import PgOptions
from tests.helpers.postgres import PgCluster
from tests.helpers.smtp_auth import log, pki, users_file  # noqa: F401

BACKENDS = ("sqlite", "postgresql")
StoreFactory = Callable[..., QuarantineStore]


def _cluster(name: str) -> Iterator[PgCluster]:
    cluster = PgCluster(name).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The shared private cluster (started once per session); tests get own databases."""
    yield from _cluster("shared")


@pytest.fixture(scope="session")
def pg_outage_cluster() -> Iterator[PgCluster]:
    """A second cluster for tests that stop and restart the server (they restart it)."""
    yield from _cluster("outage")


def pg_options(cluster: PgCluster, **overrides: Any) -> PgOptions:
    """Options with the cluster's password file and short test timeouts."""
    fields: dict[str, Any] = {
        "password_file": str(cluster.password_file),
        "pool_size": 4,
        "connect_timeout": 2.0,
        "statement_timeout": 5.0,
    }
    fields.update(overrides)
    return PgOptions(**fields)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """``make_store(**kw)``: a new (unopened) store on THIS test's database; every
    call shares the same database, as two processes would.  Closed at the end."""
    made: list[QuarantineStore] = []
    if backend == "sqlite":
        path = tmp_path / "sub" / "dir" / "q.db"

        def factory(**kw: Any) -> QuarantineStore:
            made.append(SqliteStore(path, **kw))
            return made[-1]
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.url(cluster.create_database())

        def factory(**kw: Any) -> QuarantineStore:
            made.append(PgStore(url, pg_options(cluster), **kw))
            return made[-1]

    yield factory
    for store in made:
        await store.close()
