"""Intake's operator commands.

    python -m services.intake.cli rotate-pii      # re-encrypt reporter identity under the first key
    python -m services.intake.cli requeue-dead --type message.feedback   # resend events a consumer refused

Key rotation: put the new Fernet key first in INTAKE_PII_KEYS (old keys after it), restart intake,
run `rotate-pii`, then drop the old keys. Settings come from the environment like the service's.
"""

import argparse
import asyncio
import sys

from sqlalchemy import update
from sqlmodel import select

from kit.db import make_engine, make_session_factory, utcnow
from services.intake.config import IntakeSettings
from services.intake.models import Message, OutboxEvent
from services.intake.pii import PiiVault


async def rotate_pii(settings: IntakeSettings, *, batch: int = 500) -> tuple[int, int]:
    """Re-encrypt every reporter record not yet under the current key; returns (rotated, already current)."""
    vault = PiiVault(settings.pii_keys)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    rotated = current = 0
    last = ""
    try:
        while True:
            async with sessions() as s:
                q = (
                    select(Message.id, Message.reporter_encrypted)
                    .where(Message.reporter_encrypted.is_not(None), Message.id > last)
                    .order_by(Message.id)
                    .limit(batch)
                )
                rows = (await s.exec(q)).all()
                if not rows:
                    break
                for message_id, token in rows:
                    if vault.is_current(token):
                        current += 1
                        continue
                    await s.exec(
                        update(Message)
                        .where(Message.id == message_id, Message.reporter_encrypted == token)
                        .values(reporter_encrypted=vault.rotate(token))
                    )
                    rotated += 1
                await s.commit()
                last = rows[-1][0]
    finally:
        await engine.dispose()
    return rotated, current


async def requeue_dead(settings: IntakeSettings, *, event_type: str, destination: str | None) -> int:
    """Put outbox rows a consumer rejected back in the queue (after the consumer learnt to take them)."""
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    try:
        async with sessions() as s:
            q = update(OutboxEvent).where(
                OutboxEvent.dead_at.is_not(None), OutboxEvent.event_type == event_type
            )
            if destination:
                q = q.where(OutboxEvent.destination == destination)
            result = await s.exec(q.values(dead_at=None, next_attempt_at=utcnow(), claimed_until=None))
            await s.commit()
        return result.rowcount or 0
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m services.intake.cli", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rot = sub.add_parser(
        "rotate-pii", help="re-encrypt reporter identity under the first INTAKE_PII_KEYS key"
    )
    rot.add_argument("--batch", type=int, default=500)
    dead = sub.add_parser("requeue-dead", help="resend outbox events a consumer rejected")
    dead.add_argument("--type", required=True, dest="event_type", help="e.g. message.feedback")
    dead.add_argument("--destination", default=None, help="only for this service (e.g. grading)")
    args = parser.parse_args(argv)
    settings = IntakeSettings()
    if args.command == "rotate-pii":
        rotated, current = asyncio.run(rotate_pii(settings, batch=args.batch))
        print(f"re-encrypted {rotated} reporter records; {current} were already under the current key")
    else:
        n = asyncio.run(requeue_dead(settings, event_type=args.event_type, destination=args.destination))
        print(f"requeued {n} {args.event_type} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
