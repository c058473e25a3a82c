"""The gateway's logic: staff sign-in and tokens, API keys, demo credentials. No FastAPI here."""

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.config import GatewaySettings
from gateway.models import ApiClient, StaffUser
from kit.errors import AppError
from kit.jwt_hs256 import jwt
from kit.security import hash_api_key
from schema.dto import Principal
from schema.enums import PrincipalKind, Role

_hasher = PasswordHasher()
_ISSUER = "minsheng"
_AUDIENCE = "minsheng-staff"
DEMO_PASSWORD = "demo"
DEMO_API_KEY = "demo-portal-key"
DEMO_STAFF = {
    "clerk": ("受理员（演示）", [Role.clerk]),
    "analyst": ("研判员（演示）", [Role.analyst]),
    "leader": ("领导（演示）", [Role.leader]),
    "supervisor": ("督办员（演示）", [Role.supervisor]),
    "archivist": ("档案员（演示）", [Role.archivist]),
    "admin": ("管理员（演示）", [Role.admin]),
}
# A precomputed hash to verify against when the user does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the hash (CPU-heavy: call it off the event loop)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def find_user(*, session: AsyncSession, username: str) -> StaffUser | None:
    """An active staff user by name."""
    user = await session.get(StaffUser, username)
    return user if user is not None and user.active else None


def issue_token(*, settings: GatewaySettings, user: StaffUser, now: int | None = None) -> tuple[str, int]:
    """A signed staff token and its lifetime in seconds."""
    now = int(time.time()) if now is None else now
    ttl = settings.token_ttl_seconds
    claims = {
        "sub": user.username,
        "name": user.display_name,
        "roles": list(user.roles),
        "unit": user.unit_code,
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(8),
    }
    kid = settings.jwt_active_kid
    token = jwt.encode(claims, settings.jwt_keys[kid], algorithm="HS256", headers={"kid": kid})
    return token, ttl


def principal_from_token(*, settings: GatewaySettings, token: str, client_ip: str | None) -> Principal:
    """The staff principal of a bearer token; AppError(401) when expired, forged or unknown key."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise AppError(401, "invalid_token", "the bearer token is malformed") from exc
    key = settings.jwt_keys.get(kid or "")
    if key is None:
        raise AppError(401, "invalid_token", "the bearer token was signed with an unknown key")
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], audience=_AUDIENCE, issuer=_ISSUER)
    except jwt.ExpiredSignatureError as exc:
        raise AppError(401, "token_expired", "the bearer token has expired; sign in again") from exc
    except jwt.PyJWTError as exc:
        raise AppError(401, "invalid_token", "the bearer token is not valid") from exc
    roles = [r for r in claims.get("roles", []) if r in Role.__members__]
    return Principal(
        kind=PrincipalKind.staff,
        sub=claims["sub"],
        roles=roles,
        unit_code=claims.get("unit"),
        client_ip=client_ip,
    )


@dataclass
class _CachedClient:
    client: ApiClient | None
    expires: float


class ApiKeyCache:
    """API key → client look-ups with a short cache, so each request does not hit the database."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._cache: dict[str, _CachedClient] = {}

    async def resolve(self, *, session_factory, key: str) -> ApiClient | None:
        """The active client holding the key, or None."""
        digest = hash_api_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit.expires > now:
            return hit.client
        async with session_factory() as session:
            client = (await session.exec(select(ApiClient).where(ApiClient.key_hash == digest))).first()
        if client is not None and not client.active:
            client = None
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[digest] = _CachedClient(client, now + self.ttl)
        return client


def new_api_key() -> str:
    """A fresh API key: 32 random bytes, URL-safe."""
    return "msk_" + secrets.token_urlsafe(32)


async def create_client(
    *, session: AsyncSession, client_id: str, name: str, key: str, now: datetime, demo=False
):
    """Register a channel client under a key (only the key's hash is kept)."""
    session.add(
        ApiClient(
            id=client_id, name=name, key_hash=hash_api_key(key), key_prefix=key[:8], demo=demo, created_at=now
        )
    )


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    display_name: str,
    password_hash: str,
    roles: list[str],
    unit_code: str | None,
    now: datetime,
    demo: bool = False,
) -> StaffUser:
    """Add a staff user."""
    user = StaffUser(
        username=username,
        display_name=display_name,
        password_hash=password_hash,
        roles=roles,
        unit_code=unit_code,
        demo=demo,
        created_at=now,
    )
    session.add(user)
    return user


def bundle_units(bundle_dir: Path) -> list[dict]:
    """The units of the configuration bundle's directory."""
    org = yaml.safe_load((bundle_dir / "org.yaml").read_text(encoding="utf-8")) or {}
    return org.get("units", [])


async def seed_demo(*, session: AsyncSession, bundle_dir: Path, now: datetime) -> int:
    """Create the demo API key, staff users and one user per unit, where missing; returns how many."""
    existing_users = set((await session.exec(select(StaffUser.username))).all())
    existing_clients = set((await session.exec(select(ApiClient.id))).all())
    demo_hash = hash_password(DEMO_PASSWORD)  # one hash for every demo user: seeding stays fast
    added = 0
    if "demo-portal" not in existing_clients:
        await create_client(
            session=session,
            client_id="demo-portal",
            name="A市政府门户网站留言板（演示）",
            key=DEMO_API_KEY,
            now=now,
            demo=True,
        )
        added += 1
    for username, (name, roles) in DEMO_STAFF.items():
        if username not in existing_users:
            await create_user(
                session=session,
                username=username,
                display_name=name,
                password_hash=demo_hash,
                roles=[r.value for r in roles],
                unit_code=None,
                now=now,
                demo=True,
            )
            added += 1
    for unit in bundle_units(bundle_dir):
        if unit["code"] not in existing_users:
            await create_user(
                session=session,
                username=unit["code"],
                display_name=unit["name"],
                password_hash=demo_hash,
                roles=[Role.unit.value],
                unit_code=unit["code"],
                now=now,
                demo=True,
            )
            added += 1
    await session.commit()
    return added


async def demo_credentials_present(*, session: AsyncSession) -> list[str]:
    """Names of active demo users and clients (production refuses to start while any exist)."""
    users = (
        await session.exec(
            select(StaffUser.username).where(StaffUser.demo.is_(True), StaffUser.active.is_(True))
        )
    ).all()
    clients = (
        await session.exec(select(ApiClient.id).where(ApiClient.demo.is_(True), ApiClient.active.is_(True)))
    ).all()
    return [f"user {u}" for u in users] + [f"client {c}" for c in clients]
