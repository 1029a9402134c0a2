"""The migrations build what the models declare: every table and every named index, on
SQLite and PostgreSQL. (Migrations are written by hand; this is what catches a model index
that no migration creates, e.g. one the claim's plan depends on.)"""

from __future__ import annotations

from sqlalchemy import inspect

from mitosis_server.db.engine import create_engine
from mitosis_server.db.models import Base


async def test_the_migrated_database_has_every_table_and_index_of_the_models(db_url):
    engine = create_engine(db_url)  # a copy of the template the migrations built
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(
                lambda sync: {
                    table: {index["name"] for index in inspect(sync).get_indexes(table)}
                    for table in inspect(sync).get_table_names()
                }
            )
    finally:
        await engine.dispose()
    for table in Base.metadata.sorted_tables:
        assert table.name in found, f"no migration creates table {table.name}"
        declared = {index.name for index in table.indexes}
        missing = declared - found[table.name]
        assert not missing, f"{table.name}: no migration creates {sorted(missing)}"
