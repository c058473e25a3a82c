"""Junk screening on the real seed page and real messages, and the staff's way back."""

import json

from services.intake.tests.helpers import SEEDS
from tests.support import message

SEED_004 = (SEEDS / "004_dfa81a9e8ee04e84.txt").read_text(encoding="utf-8")
SPAM_LINE = SEED_004.splitlines()[0]


def news_item(content: str, **overrides) -> dict:
    return message(
        channel="news",
        title=overrides.pop("title", "网络政务舆情收集研判和回应工作方案"),
        content=content,
        **overrides,
    )


def test_a_government_page_wrapped_in_porn_spam_keeps_its_text_and_loses_the_spam(stack, staff_tokens):
    resp = stack.post(news_item(SEED_004))
    assert resp.status_code == 201 and resp.json()["status"] == "received", resp.text
    m = stack.http.get(f"/api/v1/messages/{resp.json()['id']}", headers=staff_tokens("analyst")).json()
    assert m["content_original"] == SEED_004.strip()
    assert m["screening"]["removed_lines"] == [
        {"line": 0, "category": "porn", "score": m["screening"]["removed_lines"][0]["score"]}
    ]
    assert "毛片" not in m["content"] and "无码" not in m["content"]
    # Normalised for grading: Simplified script, pinyin glosses gone.
    assert m["content"].startswith("您现在所在的位置") and "(xiàn)" not in m["content"]
    assert "网络政务舆情收集研判和回应工作方案" in m["content"]
    assert stack.received_events(m["id"]) == 1


def test_spam_alone_is_screened_out_kept_and_not_sent_to_grading(stack, staff_tokens):
    resp = stack.post(news_item(SPAM_LINE, title="最新视频"))
    assert resp.status_code == 201
    accepted = resp.json()
    assert accepted["status"] == "screened_out" and accepted["status_text"] == "不予受理"
    assert stack.received_events(accepted["id"]) == 0
    view = stack.http.get(
        f"/api/v1/public/messages/{accepted['tracking_code']}", headers=stack.citizen()
    ).json()
    assert view["status_text"] == "不予受理" and "screening" not in view

    queue = stack.http.get(
        "/api/v1/messages", params={"status": "screened_out", "limit": 500}, headers=staff_tokens("clerk")
    )
    item = next(i for i in queue.json()["items"] if i["id"] == accepted["id"])
    assert item["screening"]["reason"] == "porn" and "毛片" in item["content"]  # kept whole, never deleted

    # Only clerks and analysts may release; the release sends message.received after all.
    url = f"/api/v1/messages/{accepted['id']}/release"
    assert stack.http.post(url, json={"reason": "误判"}, headers=staff_tokens("leader")).status_code == 403
    assert stack.http.post(url, json={"reason": "误判"}).status_code == 401
    resp = stack.http.post(url, json={"reason": "人工核实为有效线索"}, headers=staff_tokens("clerk"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "received" and resp.json()["released_by"] == "clerk"
    assert stack.received_events(accepted["id"]) == 1
    again = stack.http.post(url, json={"reason": "再次"}, headers=staff_tokens("clerk"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_screened_out"
    full = stack.http.get(f"/api/v1/messages/{accepted['id']}", headers=staff_tokens("analyst")).json()
    assert any(e["text"].startswith("人工复核放行") and e["actor"] == "clerk" for e in full["timeline"])


def test_junk_of_every_kind_is_screened_with_its_reason(stack):
    cases = {
        "advertising": "代开发票，加微信abc12345，全国可查，价格实惠，联系电话13812345678",
        "gambling": "澳门新葡京_官网_首页_百家乐_真人娱乐_注册送彩金_太阳城",
        "meaningless": "哈哈哈哈哈哈哈哈哈哈哈哈",
        "empty": "<p>&nbsp;</p>",
    }
    for reason, text in cases.items():
        resp = stack.post(message(title=None, content=text))
        assert resp.status_code == 201 and resp.json()["status"] == "screened_out", (reason, resp.text)
        [(screening,)] = stack.sql("SELECT screening FROM message WHERE id = :id", id=resp.json()["id"])
        screening = screening if isinstance(screening, dict) else json.loads(screening)
        assert screening["reason"] == reason


def test_real_complaints_mentioning_money_phones_or_vice_are_not_screened(stack):
    for text in (
        "我在A3区某小区物业交了2000元押金，物业经理电话13812345678一直不接，请相关部门处理退款。",
        "举报A3区某宾馆存在卖淫嫖娼、色情服务，请公安部门查处。",
        "A7县某培训机构收费8800元后跑路，老板微信和QQ都把家长拉黑了，请教育局和市场监管局处理。",
    ):
        resp = stack.post(message(content=text))
        assert resp.status_code == 201 and resp.json()["status"] == "received", (text, resp.text)
