"""Uploads: sniffed type, size limit from the bundle, stored once by SHA-256, attached by id."""

import hashlib
import struct
import zlib

import httpx

from services.intake.tests.helpers import as_client
from tests.support import API_KEY, message


def png(width: int = 4, extra: bytes = b"") -> bytes:
    """A small valid PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(width))
    ihdr = struct.pack(">IIBBBBB", width, width, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"tEXt", extra)
        + chunk(b"IEND", b"")
    )


def upload(stack, name: str, content: bytes, ctype: str = "application/octet-stream", headers=API_KEY):
    return stack.http.post(
        "/api/v1/messages/uploads", files={"file": (name, content, ctype)}, headers=headers
    )


def test_an_image_is_stored_once_by_its_digest_and_attached_by_id(stack, staff_tokens):
    content = png(extra=b"comment\x00" + __name__.encode())
    resp = upload(stack, "现场.png", content, "image/jpeg")  # the declared type is not believed
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["sha256"] == hashlib.sha256(content).hexdigest() and up["size"] == len(content)
    assert up["media_type"] == "image/png" and up["name"] == "现场.png"
    stored = stack.var / "uploads" / up["sha256"][:2] / up["sha256"]
    assert stored.read_bytes() == content
    again = upload(stack, "again.png", content)
    assert again.status_code == 200 and again.json()["id"] == up["id"] and again.json()["duplicate"] is True

    resp = stack.post(message(attachments=[{"upload_id": up["id"]}, {"url": "https://img.example/a.jpg"}]))
    assert resp.status_code == 201, resp.text
    m = stack.http.get(f"/api/v1/messages/{resp.json()['id']}", headers=staff_tokens("analyst")).json()
    assert m["attachments"][0]["sha256"] == up["sha256"] and m["attachments"][0]["media_type"] == "image/png"
    download = stack.http.get(f"/api/v1/messages/uploads/{up['id']}", headers=staff_tokens("analyst"))
    assert download.status_code == 200 and download.content == content

    # Another client may not use (or read) this client's upload.
    other = httpx.post(
        f"{stack.intake.url}/api/v1/messages",
        json=message(attachments=[{"upload_id": up["id"]}]),
        headers=as_client("portal-other"),
        trust_env=False,
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "unknown_upload"


def test_refused_uploads(stack):
    resp = upload(stack, "notes.txt", "纯文本不是允许的类型".encode(), "text/plain")
    assert resp.status_code == 415 and resp.json()["error"]["code"] == "unsupported_upload_type"
    resp = upload(stack, "big.png", png(extra=b"x" * (64 * 1024)))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "upload_too_large"
    resp = upload(stack, "empty.png", b"")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "empty_upload"
    resp = stack.http.post("/api/v1/messages/uploads", data={"nofile": "x"}, headers=API_KEY)
    assert resp.status_code == 422
    assert list((stack.var / "uploads").glob(".upload-*")) == []  # no temporary file left behind
    assert stack.http.post("/api/v1/messages/uploads", files={"file": ("a.png", png())}).status_code == 401
