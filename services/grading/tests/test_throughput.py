"""Grading a relay delivery in one transaction: same-matter decisions inside a batch, replicas, the index."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import islice

import numpy as np
import pytest
from datasketch import MinHash
from fastapi.testclient import TestClient

from services.grading.bundle import load_bundle
from services.grading.clustering import MatterIndex, jaccard_estimates, signature
from services.grading.main import create_app
from services.grading.tests.helpers import BUNDLE, DATA, deliver, received, staff
from services.grading.text import shingles
from services.grading.text import words as jieba_words

WATER = (
    "A2区丽发新城附近建搅拌站噪音扰民",
    "丽发新城小区旁边新建搅拌站，日夜施工，噪音和粉尘严重，居民无法休息。",
)
OTHER = [
    ("A7县星沙某小学强制补课收费", "星沙某小学周末强制学生补课并收取费用，家长负担很重。"),
    ("A3区学士街道路灯不亮", "学士街道某路段路灯坏了很久，夜间出行不安全。"),
    ("A9市集里街道菜市场占道经营", "集里街道菜市场门口占道经营严重，早晚高峰堵车。"),
    ("A5区洞井街道某工地夜间施工", "洞井街道某工地每天夜里施工到凌晨，噪音很大。"),
]


def _incident(client, message_id: str) -> dict:
    resp = client.get("/api/v1/incidents", params={"message_id": message_id}, headers=staff("analyst"))
    [item] = resp.json()["items"]
    return client.get(f"/api/v1/incidents/{item['id']}", headers=staff("analyst")).json()


def _batches(client) -> tuple[float, float]:
    """(transactions, messages) of grading's batch histogram so far."""
    count = total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("minsheng_grading_ingest_batch_messages_count"):
            count = float(line.split()[-1])
        if line.startswith("minsheng_grading_ingest_batch_messages_sum"):
            total = float(line.split()[-1])
    return count, total


def test_one_delivery_is_graded_in_one_transaction_and_one_matter_in_it_joins_one_incident(service_app):
    client = service_app("grading")
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    title, body = WATER
    first = received(title=title, content=body, at=t0)
    repost = received(title=title + "！！", content=body, at=t0 + timedelta(minutes=1), channel="weibo")
    reworded = received(
        title="丽发新城小区附近的搅拌站严重扰民",
        content="请环保部门查处丽发新城旁的非法搅拌站，噪音粉尘太大。",
        at=t0 + timedelta(minutes=2),
    )
    others = [received(title=t, content=c, at=t0 + timedelta(minutes=3)) for t, c in OTHER]
    again = dict(first, id=str(uuid.uuid4()))  # the same message under another event id
    before = _batches(client)
    results = deliver(client, first, *others[:2], repost, again, *others[2:], reworded)
    assert [r["status"] for r in results] == ["applied"] * 8
    after = _batches(client)
    assert after[0] - before[0] == 1 and after[1] - before[1] == 7  # one transaction, 7 distinct messages
    matter = _incident(client, first["data"]["message_id"])
    ids = {e["data"]["message_id"] for e in (first, repost, reworded)}
    assert set(matter["message_ids"]) == ids and matter["message_count"] == 3
    assert set(matter["channels"]) == {"portal", "weibo"}
    joins = [t for t in matter["timeline"] if t["action"] == "message_joined"]
    assert len(joins) == 2 and "近似重复" in joins[0]["note"] and "同一事项" in joins[1]["note"]
    assert len({_incident(client, e["data"]["message_id"])["id"] for e in others}) == len(OTHER)
    # Every message's citizen view names its incident (the joining ones in the batch's own event).
    statuses = client.portal.call(_status_events, client)
    told = {m: p["incident_id"] for p in statuses for m in p["message_ids"]}
    assert all(told[e["data"]["message_id"]] == matter["id"] for e in (first, repost, reworded))
    assert all(e["data"]["message_id"] in told for e in others)
    # A redelivery of the whole batch changes nothing.
    assert {r["status"] for r in deliver(client, first, repost)} == {"duplicate"}
    assert _incident(client, first["data"]["message_id"])["message_count"] == 3


async def _status_events(client) -> list[dict]:
    from sqlmodel import select

    from services.grading.models import OutboxEvent

    async with client.app.state.sessions() as s:
        q = select(OutboxEvent).where(OutboxEvent.event_type == "message.status_changed")
        return [r.payload["data"] for r in (await s.exec(q)).all()]


def test_replicas_catch_up_on_each_others_messages_and_merges_before_deciding(service_app):
    one = service_app("grading")
    # A second replica: another process's worth of state (index, lock) on the same database.
    with TestClient(create_app(one.app.state.settings.model_copy()), raise_server_exceptions=False) as two:
        _two_replicas(one, two)


def _two_replicas(one, two) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    title, body = WATER
    a = received(title=title, content=body, at=t0)
    deliver(one, a)
    b = received(title=title + "？", content=body, at=t0 + timedelta(minutes=1))
    deliver(two, b)  # replica two has never seen a: it reads a's signature before deciding
    inc = _incident(two, a["data"]["message_id"])
    assert inc["message_count"] == 2 and set(inc["message_ids"]) == {
        a["data"]["message_id"],
        b["data"]["message_id"],
    }
    t, c = OTHER[0]
    x = received(title=t, content=c, at=t0)
    deliver(two, x)
    target = _incident(one, x["data"]["message_id"])
    merged = one.post(
        f"/api/v1/incidents/{target['id']}/merge",
        json={"incident_ids": [inc["id"]], "reason": "同一业主群反映"},
        headers=staff("analyst"),
    )
    assert merged.status_code == 200, merged.text
    # Replica two still holds a and b under the old incident; the database says where they went: for a
    # near-duplicate by its message, for the same matter in other words by the merged incident.
    for late in (
        received(title=title, content=body + "还在施工。", at=t0 + timedelta(minutes=5)),
        received(
            title="丽发新城小区附近的搅拌站严重扰民",
            content="请环保部门查处丽发新城旁的非法搅拌站，噪音粉尘太大。",
            at=t0 + timedelta(minutes=6),
        ),
    ):
        deliver(two, late)
        assert _incident(one, late["data"]["message_id"])["id"] == target["id"]
    assert _incident(one, a["data"]["message_id"])["message_count"] == 5


@pytest.mark.once
def test_a_batch_that_did_not_commit_leaves_the_index_as_it_was():
    index = MatterIndex(load_bundle(BUNDLE).policy.clustering)
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    title, body = WATER
    kept = index.features(title, body)
    index.add("kept", "i1", kept, t0)
    docs = index.docs
    tentative = {"t1": index.features(title + "！", body), "t2": index.features(*OTHER[0])}
    index.add("t1", "i1", tentative["t1"], t0)
    index.add("t2", "i2", tentative["t2"], t0)
    assert index.members("i1") == 2 and index.lookup(index.features(*OTHER[0]), t0)[0].incident_id == "i2"
    index.remove(["t1", "t2"], tentative)
    assert len(index) == 1 and index.docs == docs and index.members("i1") == 1 and index.members("i2") == 0
    assert index.lookup(index.features(*OTHER[0]), t0) == []
    [hit] = index.lookup(index.features(title, body), t0)
    assert hit.incident_id == "i1" and hit.message_id == "kept" and hit.similarity == 1.0


@pytest.mark.once
def test_eviction_outside_the_window_frees_slots_and_keeps_the_rest_findable():
    policy = load_bundle(BUNDLE).policy.clustering
    index = MatterIndex(policy)
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    window = timedelta(days=policy.window_days)
    feats = []
    for i in range(3000):
        t, c = OTHER[i % len(OTHER)]
        f = index.features(f"{t}第{i}号", f"{c}编号{i}，地址{i * 7}号楼。")
        feats.append(f)
        index.add(f"m{i}", f"i{i}", f, t0 + (window if i >= 1500 else timedelta(0)))
    assert index.evict(t0 + window - timedelta(days=1)) == 1500
    assert len(index) == 1500 and index.incident_of("m10") is None and index.incident_of("m2000") == "i2000"
    found = index.lookup(feats[2000], t0 + window)
    assert found and found[0].incident_id == "i2000" and found[0].kind == "near_duplicate"
    assert all(c.incident_id != "i10" for c in index.lookup(feats[10], t0 + window))
    index.add("late", "i2000", index.features("A7县星沙某小学强制补课收费第2000号", "补课"), t0 + window)
    assert index.members("i2000") == 2


@pytest.mark.once
def test_message_ids_are_found_again_whatever_their_form_through_merges_and_compaction():
    """The index keeps ids as 16 bytes (UUIDs) or as they are (anything else) and finds each by a hash:
    every id comes back exactly as given, after the recent ones are merged and after a compaction."""
    policy = load_bundle(BUNDLE).policy.clustering
    index = MatterIndex(policy)
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    window = timedelta(days=policy.window_days)
    ids = []
    for i in range(6000):  # past the merge of recent keys (4,096)
        form = i % 4
        mid = (
            str(uuid.uuid4()),
            str(uuid.uuid4()).upper(),  # not canonical: kept as text
            f"m{i}",
            "00000000-0000-0000-0000-000000000000" if i == 3 else str(uuid.uuid4()),
        )[form]
        ids.append(mid)
        t, c = OTHER[i % len(OTHER)]
        index.add(
            mid,
            f"i{i}",
            index.features(f"{t}第{i}号", f"{c}编号{i}。"),
            t0 + (window if i >= 4000 else timedelta(0)),
        )
    assert len(index) == 6000 and all(index.incident_of(m) == f"i{i}" for i, m in enumerate(ids))
    assert index.incident_of(str(uuid.uuid4())) is None and index.incident_of("m1") is None
    # A message taken out (its batch did not commit) and added again is found once, in its new place.
    f = index.features("A3区学士街道路灯不亮第5号", "路灯")
    index.remove([ids[5]], {ids[5]: f})
    assert index.incident_of(ids[5]) is None and len(index) == 5999
    index.add(ids[5], "again", f, t0 + window)
    index.add(ids[5], "again", f, t0 + window)  # delivered twice: still one slot
    assert index.incident_of(ids[5]) == "again" and len(index) == 6000
    hit = index.lookup(index.features(f"{OTHER[0][0]}第4000号", f"{OTHER[0][1]}编号4000。"), t0 + window)[0]
    assert hit.similarity == 1.0 and hit.message_id == ids[4000] and hit.incident_id == "i4000"
    assert index.evict(t0 + window - timedelta(days=1)) == 3999  # compacts: more dead than alive
    assert len(index) == 2001 and index._dead == 0
    assert all(index.incident_of(m) is None for m in ids[:4000] if m != ids[5])
    assert all(index.incident_of(m) == f"i{i}" for i, m in enumerate(ids) if i >= 4000)
    assert index.incident_of(ids[5]) == "again"
    hit = index.lookup(index.features(f"{OTHER[2][0]}第4002号", f"{OTHER[2][1]}编号4002。"), t0 + window)[0]
    assert hit.similarity == 1.0 and hit.message_id == ids[4002] == "m4002"


def _real_texts(n: int) -> list[str]:
    """The fixed texts, plus the first n real messages with a title of 8 characters or more (when the
    data is there)."""
    texts = [f"{t}{c}" for t, c in [WATER, *OTHER]]
    path = DATA / "messages_with_votes.jsonl"
    if path.exists():
        with path.open(encoding="utf-8") as f:
            rows = (json.loads(line) for line in f)
            real = (f"{r['title']}{(r['body'] or '')[:400]}" for r in rows if len(r["title"]) >= 8)
            texts += list(islice(real, n))
    return texts


@pytest.mark.once
def test_signatures_and_words_are_the_ones_stored_before():
    """The index reads signatures other replicas (and earlier versions) stored: the direct MinHash
    equals datasketch's, and the fast segmentation gives jieba's words on real messages."""
    policy = load_bundle(BUNDLE).policy.clustering
    index = MatterIndex(policy)
    texts = _real_texts(200)
    for text in [*texts, "", "好"]:
        m = MinHash(num_perm=policy.num_perm, permutations=index._perm, scheme="affine32")
        sh = shingles(text, policy.shingle_size)
        if sh:
            m.update_batch([s.encode() for s in sh])
        assert np.array_equal(index.minhash(text), m.hashvalues.astype(np.uint32))
    stop = frozenset(policy.stopwords)
    from services.grading.clustering import words

    same = sum(words(t, stop) == jieba_words(t, stop) for t in texts)
    assert same >= 0.97 * len(texts)


@pytest.mark.once
def test_one_byte_of_each_minhash_value_estimates_the_similarity_the_full_values_give():
    """The index keeps 8 bits of each MinHash value (b-bit minwise hashing): its estimate follows the
    full 32-bit values' across the range of similarity, and reads unrelated messages as unrelated."""
    policy = load_bundle(BUNDLE).policy.clustering
    index = MatterIndex(policy)
    rng = np.random.default_rng(7)
    texts = _real_texts(300)
    hv = [index.minhash(t) for t in texts]
    sigs = np.stack([signature(h) for h in hv])
    assert sigs.dtype == np.uint8 and sigs.shape == (len(texts), policy.num_perm)
    related_gap, unrelated = [], []
    for i, text in enumerate(texts):
        chars = list(text)
        for _ in range(int(rng.integers(0, max(1, len(chars) // 3)))):  # 0 … a third of it rewritten
            chars[int(rng.integers(len(chars)))] = "改"
        edited = index.minhash("".join(chars))
        full = float((hv[i] == edited).mean())
        related_gap.append(jaccard_estimates(sigs[i : i + 1], edited)[0] - full)
        others = [j for j in range(len(texts)) if j != i and not (hv[j] == hv[i]).any()]  # share nothing
        unrelated.extend(jaccard_estimates(sigs[others], hv[i]).tolist())
    gap = np.abs(related_gap)
    assert gap.mean() < 0.02 and gap.max() <= 0.1, (gap.mean(), gap.max())
    assert abs(np.mean(related_gap)) < 0.01  # the chance agreements are taken back out, not kept
    assert len(unrelated) > 1000 and np.mean(unrelated) < 0.005 and np.max(unrelated) < 0.15
    # Identical texts read as identical; through the index, an edited repost joins as a near-duplicate.
    assert jaccard_estimates(sigs[:1], hv[0])[0] == 1.0
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    index.add("m0", "i0", index.features(*WATER), t0)
    hit = index.lookup(index.features(WATER[0], WATER[1].replace("严重", "很重")), t0)[0]
    assert hit.kind == "near_duplicate" and hit.message_id == "m0" and 0.6 <= hit.similarity < 1.0


@pytest.mark.once
def test_band_keys_are_four_bytes_with_their_band_on_top_and_find_the_same_candidates():
    """LSH band keys are 32-bit: the band number sits in the top bits (no key of one band can meet a
    key of another), and a near-duplicate is found through the sorted array as through the recent dict."""
    policy = load_bundle(BUNDLE).policy.clustering
    index = MatterIndex(policy)
    bands = index._bands
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    feats = [index.features(f"{t}第{i}号", f"{c}编号{i}。") for i, (t, c) in enumerate(OTHER * 1200)]
    keys = np.stack([index._band_keys_of(f) for f in feats])
    assert keys.dtype == np.uint32 and keys.shape == (len(feats), bands)
    assert (keys >> np.uint32(index._band_shift) == np.arange(bands, dtype=np.uint32)).all()
    # Distinct rows of a band give distinct keys (a collision is possible, 2^-24 a pair at worst).
    r = index._rows
    for b in range(bands):
        rows = {f.hashvalues[b * r : (b + 1) * r].tobytes() for f in feats}
        assert len(set(keys[:, b].tolist())) >= len(rows) - 1 > 100
    for i, f in enumerate(feats):
        index.add(f"m{i}", f"i{i}", f, t0)
    assert index._band_keys.dtype == np.uint32 and len(index._band_keys) >= bands * 4096  # merged once
    for i in (0, len(feats) - 1):  # one in the sorted array, one still in the recent dict
        t, c = OTHER[i % len(OTHER)]
        hit = index.lookup(index.features(f"{t}第{i}号", f"{c}编号{i}。"), t0)[0]
        assert hit.kind == "near_duplicate" and hit.message_id == f"m{i}" and hit.similarity == 1.0
    too_many = policy.model_copy(update={"num_perm": 1024, "near_duplicate_jaccard": 0.05})
    with pytest.raises(ValueError, match="LSH bands"):
        MatterIndex(too_many)
