"""Dense logic on its own: identity checks and masks, tracking codes, cleaning, screening, Open311 XML."""

import random
import re
import unicodedata

import pytest

from services.intake import callbacks
from services.intake.cleaning import nfkc, normalize_text
from services.intake.config import IntakeConfigError, IntakeSettings, load_config
from services.intake.open311 import Catalogue, to_xml
from services.intake.pii import (
    id_check_digit,
    mask_phone,
    mask_text,
    normalize_email,
    normalize_id_number,
    normalize_phone,
)
from services.intake.screening import Screener
from services.intake.tests.helpers import SEEDS, real_messages
from services.intake.tracking import canonical_tracking_code, new_tracking_code

pytestmark = pytest.mark.once
CONFIG = load_config(IntakeSettings())
SCREENER = Screener(CONFIG.screening)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("13812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("0086-138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("0731-88776655", "0731-88776655"),
        ("010 12345678", "010-12345678"),
        ("12812345678", None),
        ("1381234567", None),
        ("138123456789", None),
        ("abc", None),
    ],
)
def test_phone_numbers(raw, normal):
    assert normalize_phone(raw) == normal


def test_landlines_can_be_refused():
    assert normalize_phone("0731-88776655", accept_landlines=False) is None


def test_id_numbers_need_a_real_date_and_the_check_digit():
    assert id_check_digit("11010519491231002") == "X"
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"
    assert normalize_id_number("110105194912310021") is None  # check digit
    assert normalize_id_number("110105194902300028") is None  # 30 February
    assert normalize_id_number("11010519491231002") is None  # 17 characters
    # Every check digit that the formula gives is accepted.
    for body in ("43010219800101001", "44030619991231123", "51010420000229567"):
        assert normalize_id_number(body + id_check_digit(body)) == body + id_check_digit(body)


def test_email():
    assert normalize_email("Someone@Example.COM") == "Someone@example.com"
    assert normalize_email("no at sign") is None and normalize_email("a@b") is None


def test_masks():
    assert mask_phone("13800000000") == "138****0000"
    assert mask_phone("0731-88776655") == "0731-****6655"
    text = (
        "电话13812345678、+86 139 1234 5678，身份证43010219800101001X，"
        "座机0731-88776655，订单号123456789012345678901"
    )
    masked = mask_text(text)
    assert "138****5678" in masked and "139****5678" in masked and "430***********001X" in masked
    assert "0731-****6655" in masked
    assert "123456789012345678901" in masked  # a long number that is neither stays
    assert "0731-88776655" in mask_text(text, landlines=False)


def test_tracking_codes_are_random_readable_and_checked():
    codes = {new_tracking_code() for _ in range(2000)}
    assert len(codes) == 2000
    code = codes.pop()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-.", code)
    assert canonical_tracking_code(code.lower().replace("-", " ")) == code
    typo = code[:2] + ("0" if code[2] != "0" else "1") + code[3:]
    assert canonical_tracking_code(typo) is None  # one wrong symbol is caught by the check symbol


def test_cleaning_keeps_meaning_and_drops_noise():
    assert normalize_text("<p>您現(xiàn)在&nbsp;所在\u200b的位置</p>") == "您现在 所在的位置"
    assert normalize_text("市民(主张)反映") == "市民(主张)反映"  # real brackets stay
    assert normalize_text("ＡＢＣ１２３\r\n\r\n  第二行\t\t") == "ABC123\n第二行"


def test_the_fast_nfkc_gives_what_unicodedata_gives():
    texts = [t for row in real_messages("messages_with_replies.jsonl") for t in (row["title"], row["body"])]
    # Full-width forms, combining marks, conjoining jamo, compatibility ideographs, astral characters.
    alphabet = [chr(c) for c in (*range(0xFF00, 0xFFF0), *range(0x300, 0x370), *range(0x1100, 0x1200))]
    alphabet += [*list("ｶﾞ가각éè中文，。ab 1"), "豈", "𝐀", "丽", "①", "\u3000"]
    rnd = random.Random(7)
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))) for _ in range(20_000)]
    differing = sum(nfkc(t) != t for t in texts)
    assert differing > 1000  # the case that matters: text NFKC changes
    assert [nfkc(t) for t in texts] == [unicodedata.normalize("NFKC", t) for t in texts]


def test_the_seed_page_loses_only_its_spam_line():
    page = normalize_text((SEEDS / "004_dfa81a9e8ee04e84.txt").read_text(encoding="utf-8"))
    verdict = SCREENER.screen(title=None, text=page)
    assert not verdict.screened
    assert [(r["line"], r["category"]) for r in verdict.removed] == [(0, "porn")]
    assert verdict.text == "\n".join(page.split("\n")[1:])


def test_the_other_seed_documents_are_untouched():
    for path in sorted(SEEDS.glob("00[0-3]_*.txt")):
        verdict = SCREENER.screen(title=None, text=normalize_text(path.read_text(encoding="utf-8")))
        assert not verdict.screened and not verdict.removed, path.name


def test_no_labelled_real_message_is_screened_or_trimmed():
    for row in real_messages("messages_labeled_train.jsonl"):
        v = SCREENER.screen(title=normalize_text(row["title"]), text=normalize_text(row["body"]))
        assert not v.screened and not v.removed, row["id"]


def test_open311_catalogue_and_xml():
    catalogue = Catalogue(CONFIG)
    assert len(catalogue.services) > 400
    xml = to_xml("services", "service", catalogue.service_list()[:1]).decode()
    assert xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n<services><service><service_code>')
    assert "<metadata>true</metadata>" in xml


def test_callback_signatures():
    body = b'{"a":1}'
    header = callbacks.sign("s3cret", body)
    assert callbacks.verify("s3cret", header, body)
    assert not callbacks.verify("s3cret", header, body + b" ")
    assert not callbacks.verify("other", header, body)
    assert not callbacks.verify("s3cret", "t=1,v1=00", body)  # too old


def test_a_broken_bundle_is_refused_with_a_reason():
    with pytest.raises(IntakeConfigError, match="screening"):
        load_config(IntakeSettings(config_overrides={"screening": {"min_meaningful_chars": "many"}}))
