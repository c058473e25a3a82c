"""The gateway's tables: staff users and channel clients (API keys)."""

from datetime import datetime

from sqlmodel import Field

from gateway.db import GatewayTable
from kit.db import JSONType, UTCDateTime, new_dict, new_list


class StaffUser(GatewayTable, table=True):
    """A member of staff who signs in for a bearer token."""

    __tablename__ = "staff_user"

    username: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=200)
    roles: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    unit_code: str | None = Field(default=None, max_length=64)
    active: bool = True
    demo: bool = Field(default=False, description="shipped for the embedded demo; production refuses it")
    created_at: datetime = Field(sa_type=UTCDateTime)


class ApiClient(GatewayTable, table=True):
    """A channel client (portal backend, hotline system, monitoring feed) and its API key."""

    __tablename__ = "api_client"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    key_hash: str = Field(max_length=64, unique=True)
    key_prefix: str = Field(max_length=12)
    active: bool = True
    demo: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)


class AuditEvent(GatewayTable, table=True):
    """One staff call or sign-in, as the gateway saw it. Append-only and hash-chained: each row's hash
    covers its content and the previous row's hash; the database refuses UPDATE and DELETE."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=64, index=True, description="the staff username (or the name tried)")
    roles: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    unit_code: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=16, description="call | sign_in")
    method: str = Field(max_length=8)
    route: str = Field(max_length=300, index=True)
    path: str = Field(max_length=1000)
    target_ids: dict[str, str] = Field(default_factory=new_dict, sa_type=JSONType)
    query: str | None = Field(default=None, max_length=1000)
    status: int
    outcome: str = Field(max_length=16, description="ok | refused | rejected | failed")
    request_id: str = Field(max_length=128)
    trace_id: str | None = Field(default=None, max_length=32)
    client_ip: str | None = Field(default=None, max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
