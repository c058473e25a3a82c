"""Operator commands for the gateway's credentials.

python -m gateway.cli create-user --username wang --role analyst [--unit a5-education]
python -m gateway.cli create-client --id hotline --name "12345热线"     (prints the new API key once)
python -m gateway.cli disable-demo                                       (before switching to production)
"""

import argparse
import asyncio
import getpass
import sys

from sqlmodel import update

from gateway import service
from gateway.config import GatewaySettings
from gateway.models import ApiClient, StaffUser
from kit.db import make_engine, make_session_factory, utcnow
from schema.enums import Role


async def _run(args) -> int:
    settings = GatewaySettings()
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    try:
        async with sessions() as session:
            if args.command == "create-user":
                password = args.password or getpass.getpass("password: ")
                if len(password) < 12 and not settings.demo:
                    print("passwords need at least 12 characters", file=sys.stderr)
                    return 2
                await service.create_user(
                    session=session,
                    username=args.username,
                    display_name=args.name or args.username,
                    password_hash=service.hash_password(password),
                    roles=args.role,
                    unit_code=args.unit,
                    now=utcnow(),
                )
                await session.commit()
                print(f"user {args.username} created with roles {', '.join(args.role)}")
            elif args.command == "create-client":
                key = service.new_api_key()
                await service.create_client(
                    session=session, client_id=args.id, name=args.name, key=key, now=utcnow()
                )
                await session.commit()
                print(f"client {args.id} created; its API key (shown once): {key}")
            elif args.command == "disable-demo":
                await session.exec(update(StaffUser).where(StaffUser.demo.is_(True)).values(active=False))
                await session.exec(update(ApiClient).where(ApiClient.demo.is_(True)).values(active=False))
                await session.commit()
                print("demo users and clients disabled")
    finally:
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="gateway.cli", description="Manage staff users and API clients.")
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("create-user")
    u.add_argument("--username", required=True)
    u.add_argument("--name")
    u.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    u.add_argument("--unit", help="unit code (for the unit role)")
    u.add_argument("--password", help="omit to be asked")
    c = sub.add_parser("create-client")
    c.add_argument("--id", required=True)
    c.add_argument("--name", required=True)
    sub.add_parser("disable-demo")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
