"""Archive settings (env prefix ARCHIVE_; platform-wide values from MINSHENG_*)."""

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class ArchiveSettings(ServiceSettings):
    """Everything archive reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ARCHIVE_", extra="ignore", populate_by_name=True)
    secret_fields: ClassVar[tuple[str, ...]] = ("service_secret", "seal_keys")
    service_name: ClassVar[str] = "archive"

    port: int = 8004
    # Each sealed dossier carries an HMAC of its chain link made with the current key, so that someone
    # who can write the database but does not hold the key cannot re-seal an altered chain. Old keys stay
    # listed (by id) so that dossiers sealed before a rotation still verify.
    seal_keys: dict[str, str] = Field(default_factory=lambda: {"demo": "demo-archive-seal-key"})
    seal_key_id: str = "demo"
    # A CJK font (TTF/TTC/OTF) for PDFs and charts; unset: the font shipped with the archive dependencies.
    cjk_font_path: Path | None = None
    verify_batch_size: int = Field(default=2000, ge=10)
    # Dossiers with more text than this are built in a worker thread rather than on the event loop.
    seal_inline_max_chars: int = Field(default=20_000, ge=0)
    search_text_max_chars: int = Field(default=200_000, ge=1000)
    # The full-text indexer: dossiers per transaction, and how often it looks without being woken.
    index_batch_size: int = Field(default=200, ge=1)
    index_poll_seconds: float = Field(default=2.0, gt=0)
