"""What one short statement costs the controller's process, by road (the reason for
``desired_state.direct``): SQLAlchemy's autocommit engine, a held SQLAlchemy connection, and a
direct psycopg connection lent by ``DirectConnections``. CPU milliseconds per statement of
this process (user + system), each road run ``--statements`` times after a warm-up.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.statements --statements 3000
"""

from __future__ import annotations

import argparse
import os
import resource
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from controller.aio import run as run_loop
from desired_state.direct import direct, dispose
from desired_state.engine import async_engine

STATEMENT = "select cast(%(value)s as text) || 'x'"
"""One parameter in, one row out: the shape of the hot path's statements."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_statement_ms(run: Callable[[int], Awaitable[object]], statements: int) -> float:
    """CPU milliseconds per call of ``run``, after ten unmeasured ones."""
    for i in range(10):
        await run(i)
    started = cpu_seconds()
    for i in range(statements):
        await run(i)
    return round((cpu_seconds() - started) / statements * 1000, 3)


async def measure(url: str, statements: int) -> dict[str, float]:
    engine = async_engine(url, pool_size=2)
    autocommitted = engine.execution_options(isolation_level="AUTOCOMMIT")
    through_sqlalchemy = text(STATEMENT.replace("%(value)s", ":value"))

    async def checkout_each(i: int) -> object:
        async with autocommitted.connect() as conn:
            return await conn.scalar(through_sqlalchemy, {"value": str(i)})

    async def direct_each(i: int) -> object:
        async with direct(engine).connection() as conn:
            return await (await conn.execute(STATEMENT, {"value": str(i)})).fetchone()

    try:
        figures = {
            "sqlalchemy_checkout_and_statement_ms": await per_statement_ms(
                checkout_each, statements
            )
        }
        async with autocommitted.connect() as held:

            async def held_each(i: int) -> object:
                return await held.scalar(through_sqlalchemy, {"value": str(i)})

            figures["sqlalchemy_held_connection_ms"] = await per_statement_ms(held_each, statements)
        figures["direct_checkout_and_statement_ms"] = await per_statement_ms(
            direct_each, statements
        )
    finally:
        await dispose(engine)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("set DATABASE_URL (a Postgres the benchmark may connect to)")
    for key, value in run_loop(measure(url, args.statements)).items():
        print(f"{key:<36}  {value}")


if __name__ == "__main__":
    main()
