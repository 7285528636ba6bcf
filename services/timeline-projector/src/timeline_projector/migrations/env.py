from automation_shared.db import run_alembic_env

run_alembic_env()
