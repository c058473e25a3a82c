"""The archive through the gateway, as an archivist uses it: find, export, report, verify."""

import hashlib
import io
import json
import uuid
import zipfile

from tests.support import message, wait_until


def test_an_archivist_finds_exports_and_reports_a_closed_matter_through_the_gateway(platform):
    marker = f"档案检索{uuid.uuid4().hex[:6]}"
    body = message(
        title=f"A3区望城街道{marker}路灯损坏",
        content=f"A3区望城街道{marker}附近路灯损坏半个月，夜间行人摔倒，请尽快维修。",
        attachments=[
            {"url": "https://portal.example/f/1.jpg", "media_type": "image/jpeg", "name": "路灯.jpg"}
        ],
    )
    accepted = platform.post_message(body).json()
    [incident] = wait_until(lambda: platform.incidents_of(accepted["id"]), what="incident")
    resp = platform.http.post(
        f"/api/v1/incidents/{incident['id']}/close",
        json={"summary": "路灯已修复。"},
        headers=platform.staff("analyst"),
    )
    assert resp.status_code == 200, resp.text

    archivist = platform.staff("archivist")

    def found():
        page = platform.http.get("/api/v1/archive/dossiers", params={"q": marker}, headers=archivist).json()
        return page["items"] if page["index_pending"] == 0 else []

    [hit] = wait_until(found, timeout=30, what="the dossier to be searchable")
    assert hit["incident_id"] == incident["id"]
    assert f"<em>{marker}</em>" in hit["highlight"]["title"]
    assert platform.http.get("/api/v1/archive/dossiers", headers=platform.staff("analyst")).status_code == 403

    export = platform.http.get(f"/api/v1/archive/dossiers/{hit['id']}/export", headers=archivist)
    assert export.status_code == 200 and export.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(export.content))
    for f in json.loads(z.read("manifest.json"))["files"]:
        assert hashlib.sha256(z.read(f["path"])).hexdigest() == f["sha256"]
    assert json.loads(z.read("attachments.json"))["attachments"][0]["name"] == "路灯.jpg"

    report = platform.http.get("/api/v1/archive/reports/daily", params={"format": "docx"}, headers=archivist)
    assert report.status_code == 200 and report.content[:2] == b"PK"
    figures = platform.http.get("/api/v1/archive/reports/daily", params={"format": "json"}, headers=archivist)
    assert figures.json()["total"] >= 1
    assert platform.http.get("/api/v1/archive/verify", headers=archivist).json()["ok"] is True
