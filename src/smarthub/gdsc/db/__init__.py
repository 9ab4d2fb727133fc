"""The GDSC database: the engine and its pragmas, every table in one metadata, the Alembic
migrations, the PostgreSQL application role."""
