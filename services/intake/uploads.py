"""Uploaded files: type sniffed from the bytes (not the declared type), size-limited, stored by SHA-256.

Files live under <var_dir>/<uploads.dir>/<first two hex digits>/<sha256>, so the same bytes are
stored once; each client gets its own upload record (an upload id is usable only by its owner).
"""

import hashlib
import os
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import filetype
from anyio import to_thread
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import UploadFile

from kit.errors import AppError
from services.intake import metrics
from services.intake.config import Uploads
from services.intake.models import Upload

CHUNK = 1024 * 1024
# Types the signature library names differently from the configured MIME names.
_ALIASES = {"audio/x-flac": "audio/flac", "audio/wav": "audio/x-wav", "image/x-ms-bmp": "image/bmp"}


def storage_dir(var_dir: Path, rules: Uploads) -> Path:
    """Where uploads are stored."""
    return Path(var_dir) / rules.dir


def path_for(root: Path, sha256: str) -> Path:
    """The stored file of a digest."""
    return root / sha256[:2] / sha256


def _store(src, root: Path, rules: Uploads) -> tuple[str, int, str]:
    """Copy the spooled upload to a temporary file while hashing and checking, then move it into place.

    Runs in a worker thread; a refused file never reaches the store.
    """
    max_bytes = rules.max_bytes
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            src.seek(0)
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise AppError(413, "upload_too_large", f"files may be at most {max_bytes} bytes")
                if len(head) < 8192:
                    head += chunk[: 8192 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise AppError(422, "empty_upload", "the file is empty")
        kind = filetype.guess(head)
        media = _ALIASES.get(kind.mime, kind.mime) if kind else None
        if media is None or media not in rules.allowed_types:
            raise AppError(
                415,
                "unsupported_upload_type",
                f"files of type {media or 'unknown'} are not accepted",
                [{"allowed": rules.allowed_types}],
            )
        sha = digest.hexdigest()
        final = path_for(root, sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return sha, size, media
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def save(
    *,
    session: AsyncSession,
    file: UploadFile,
    client_id: str,
    rules: Uploads,
    var_dir: Path,
    now: datetime,
) -> tuple[Upload, bool]:
    """Store an uploaded file; returns the upload and whether this client had sent the same bytes before."""
    root = storage_dir(var_dir, rules)
    try:
        sha, size, media = await to_thread.run_sync(_store, file.file, root, rules)
    except AppError:
        metrics.UPLOADS.labels("rejected").inc()
        raise
    existing = (
        await session.exec(select(Upload).where(Upload.client_id == client_id, Upload.sha256 == sha))
    ).first()
    if existing is not None:
        metrics.UPLOADS.labels("duplicate").inc()
        return existing, True
    name = (file.filename or "")[-200:] or None
    upload = Upload(
        id=str(uuid.uuid4()),
        client_id=client_id,
        sha256=sha,
        size=size,
        media_type=media,
        name=name,
        created_at=now,
    )
    session.add(upload)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = (
            await session.exec(select(Upload).where(Upload.client_id == client_id, Upload.sha256 == sha))
        ).first()
        if existing is None:
            raise
        return existing, True
    metrics.UPLOADS.labels("stored").inc()
    return upload, False
