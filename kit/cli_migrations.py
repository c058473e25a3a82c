"""Developer helper: `python -m kit.cli_migrations <service> "<message>"` autogenerates a migration."""

import sys
import tempfile
from importlib import import_module
from pathlib import Path

from alembic import command

from kit.migrate import alembic_config, upgrade


def main() -> None:
    """Autogenerate a revision for a service against a scratch SQLite database at head."""
    service, message = sys.argv[1], sys.argv[2]
    pkg = import_module(f"services.{service}.main") if service != "gateway" else import_module("gateway.main")
    migrations = Path(pkg.MIGRATIONS)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(migrations, url)
        command.revision(alembic_config(migrations, url), message=message, autogenerate=True)


if __name__ == "__main__":
    main()
