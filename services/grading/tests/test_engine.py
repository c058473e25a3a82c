"""The grading engine on its own: category, request type, places, routing with reasons, score, clocks."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from schema.dto import Metrics, Superior
from schema.enums import Level, RequestType, ResponseType, WarningClass
from schema.events import MessageReceivedData
from services.grading.bundle import load_bundle
from services.grading.grader import Engine
from services.grading.scoring import Facts
from services.grading.tests.helpers import BUNDLE

pytestmark = pytest.mark.once
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_bundle(BUNDLE))


def msg(title: str, content: str = "", **kw) -> MessageReceivedData:
    return MessageReceivedData(
        message_id="m",
        tracking_code="t",
        channel=kw.pop("channel", "portal"),
        title=title,
        content=content or title,
        received_at=kw.pop("received_at", datetime(2026, 5, 12, 10, 0, tzinfo=CST)),
        **kw,
    )


def test_one_district_goes_to_that_districts_competent_department(engine):
    g = engine.grade(
        msg("A7县星沙某小学强制补课收费", "A7县某小学周末强制学生补课并收取补课费，家长负担很重。")
    )
    assert g.category.level1 == "教育文体" and g.department_type == "education"
    assert g.route.lead.code == "a7-education" and g.route.rule == "district"
    assert "A7县" in g.route.reason and "教育局" in g.route.reason


def test_a_named_street_leads_local_matters_with_the_district_department_co_handling(engine):
    g = engine.grade(
        msg("A2区桂花坪街道某小区物业乱收费", "A2区桂花坪街道某小区物业公司乱收停车费，业委会不管。")
    )
    assert g.route.lead.code == "a2-guihuaping" and g.route.rule == "street"
    assert [u.code for u in g.route.co][:1] == ["a2-housing"]
    assert "桂花坪街道" in g.route.reason


def test_no_district_or_city_wide_goes_to_the_city_department(engine):
    g = engine.grade(msg("建议全市推广垃圾分类", "建议A市在全市范围推广生活垃圾分类，设置分类垃圾桶。"))
    assert g.route.lead.jurisdiction == "city" and g.route.rule == "city"
    assert g.places.city_wide


def test_several_districts_city_leads_and_districts_co_handle(engine):
    g = engine.grade(msg("A1区和A3区之间的道路积水严重", "A1区到A3区的道路下雨就积水，井盖破损，市政不管。"))
    assert g.route.rule == "several_districts" and g.route.lead.jurisdiction == "city"
    assert {u.jurisdiction for u in g.route.co} == {"a1", "a3"}


def test_a_superiors_forward_goes_to_the_named_unit(engine):
    g = engine.grade(
        msg(
            "省里转办：A5区某小区停水",
            superior=Superior(issuer="省政府办公厅", unit_code="a5-gov"),
            channel="superior",
        )
    )
    assert g.route.lead.code == "a5-gov" and g.route.rule == "superior" and "省政府办公厅" in g.route.reason
    assert "superior_forward" in {f.name for f in g.factors}


def test_nothing_to_go_on_or_another_city_goes_to_the_dispatch_centre(engine):
    assert engine.grade(msg("你好", "在吗")).route.rule == "unknown"
    g = engine.grade(msg("K7县一中周末补课", "K7县一中周末补课收费。"))
    assert g.route.lead.code == "city-dispatch" and g.route.rule == "outside" and "K7县" in g.route.reason


def test_the_title_says_where_the_matter_is_when_the_body_names_other_places(engine):
    # Where the writer lives or works, named in the body, does not pull the matter to that district.
    g = engine.grade(
        msg(
            "A2区桂花坪街道某小区物业乱收费",
            "我在A5区上班，住在A2区桂花坪街道某小区，以前住A3区时物业从不这样，现在物业乱收停车费。",
        )
    )
    assert g.places.districts == ["a2"] and g.places.streets == ["桂花坪街道"]
    assert g.route.lead.code == "a2-guihuaping"
    # Without a place in the title every district named counts: several districts, the city leads.
    g = engine.grade(msg("道路积水严重", "A1区到A3区的道路下雨就积水，井盖破损，市政不管。"))
    assert g.places.districts == ["a1", "a3"] and g.route.rule == "several_districts"
    # A channel's district code is not overridden by the title.
    g = engine.grade(msg("A2区某小区物业乱收费", "物业乱收停车费。", location={"district_code": "a5"}))
    assert g.places.districts[0] == "a5"


def test_a_street_is_found_by_its_short_form_and_a_town_name_does_not_outweigh_another_city(engine):
    g = engine.grade(msg("反映新开铺某小区违章搭建", "新开铺某小区一楼住户违章搭建阳台，占用公共绿地。"))
    assert g.places.districts == ["a2"] and g.places.streets == ["新开铺街道"]
    # Towns share names across the country: 新港镇 beside F市 is F市's, not A4区's.
    g = engine.grade(msg("咨询F市户籍制度问题", "我在F市新港镇工作，想咨询F市户籍迁入的条件。"))
    assert g.places.districts == [] and g.route.rule == "outside"
    # A district named outright still counts beside another city.
    g = engine.grade(msg("A4区新港镇某厂污染", "A4区新港镇某厂排污，我是F市人在此打工。"))
    assert g.places.districts == ["a4"]


def test_request_type_is_inferred_when_the_channel_gives_none(engine):
    assert (
        engine.grade(msg("咨询A市公积金贷款额度", "请问公积金贷款额度怎么计算？")).request_type
        == RequestType.consult
    )
    assert (
        engine.grade(msg("举报A3区某餐馆使用地沟油", "举报该餐馆违法使用地沟油。")).request_type
        == RequestType.report
    )
    g = engine.grade(msg("建议在A6区增设公交线路", "希望增加公交线路", request_type="complaint"))
    assert g.request_type == RequestType.complaint and not g.request_type_inferred
    assert (
        engine.grade(msg("建议在A6区增设公交线路", "希望增加公交线路")).response_type
        == ResponseType.constructive
    )


def test_every_factor_of_the_score_is_kept_with_its_points(engine):
    g = engine.grade(
        msg(
            "A5区某小学门口道路坍塌致学生受伤",
            "A5区某小学门口道路坍塌，一名学生受伤，家长聚集在校门口。",
            channel="weibo",
            metrics=Metrics(views=200000, reposts=5000, comments=3000, likes=10000),
        )
    )
    names = {f.name for f in g.factors}
    assert {
        "content:casualties",
        "content:disaster_accident",
        "content:children_schools",
        "spread",
        "media",
    } <= names
    assert g.score == pytest.approx(sum(f.points for f in g.factors), abs=0.01)
    assert g.level in (Level.I, Level.II) and g.warning_class == WarningClass.major_emergency
    quiet = engine.grade(msg("A3区某路段路灯不亮", "A3区某路段路灯不亮。"))
    assert quiet.level == Level.IV and quiet.warning_class == WarningClass.general


def test_cluster_growth_risk_topics_and_sensitive_periods_add_points(engine):
    base = Facts(
        text="A市某小区附近搅拌站噪音扰民",
        received_at=datetime(2026, 3, 5, 9, tzinfo=CST),
        now=datetime(2026, 3, 5, 9, tzinfo=CST),
    )
    grown = Facts(
        **{
            **base.__dict__,
            "message_count": 12,
            "recent_messages": 11,
            "channels": ["portal", "weibo", "hotline"],
        }
    )
    names = {f.name: f.points for f in engine.score_incident(grown).factors}
    assert names["cluster_size"] > 0 and names["growth"] > 0 and names["channels"] > 0
    assert "risk_topic:渣土车和搅拌站" in names and "sensitive_period:全国两会" in names
    assert engine.score_incident(grown).score > engine.score_incident(base).score


def test_working_day_deadline_after_the_national_day_holiday(engine):
    # 2025-09-30 is the eve of National Day: 10-01…10-08 are holidays, Saturday 10-11 a make-up working day.
    g = engine.grade(msg("A3区某小区停水", received_at=datetime(2025, 9, 30, 16, 0, tzinfo=CST)))
    assert g.deadlines.reply_due.astimezone(CST) == datetime(2025, 10, 12, 0, 0, tzinfo=CST)
    # An ordinary Tuesday: three working days later, end of Friday.
    g = engine.grade(msg("A3区某小区停水", received_at=datetime(2025, 11, 11, 9, 0, tzinfo=CST)))
    assert g.deadlines.reply_due.astimezone(CST) == datetime(2025, 11, 15, 0, 0, tzinfo=CST)
    # Hours-based clocks stay natural time from receipt.
    assert g.deadlines.report_due == datetime(2025, 11, 11, 9, 0, tzinfo=CST) + timedelta(hours=4)


def test_natural_day_deadlines_when_the_policy_says_so(tmp_path):
    from services.grading.tests.helpers import bundle_copy, replace_in

    d = bundle_copy(tmp_path)
    replace_in(d / "policy.yaml", "reply_working_days: true", "reply_working_days: false")
    e = Engine(load_bundle(d))
    at = datetime(2025, 9, 30, 16, 0, tzinfo=CST)
    assert e.grade(msg("A3区某小区停水", received_at=at)).deadlines.reply_due == at + timedelta(days=3)


def test_the_calendar_remembers_its_answers_and_they_are_the_statutory_ones(engine):
    import chinese_calendar

    cal = engine.calendar
    days = [date(2025, 9, 20) + timedelta(days=i) for i in range(40)]  # National Day and its make-up days
    first = [cal.is_workday(d) for d in days]
    assert first == [chinese_calendar.is_workday(d) for d in days] == [cal.is_workday(d) for d in days]
    assert not cal.is_workday(date(2025, 10, 3)) and cal.is_workday(date(2025, 10, 11))
    for i in range(5000):  # a long run of distinct days keeps the memory bounded
        cal.is_workday(date(2020, 1, 1) + timedelta(days=i))
    assert cal.is_workday.cache_info().currsize <= 4096


def test_a_year_the_statutory_calendar_does_not_know_falls_back_to_weekends(engine):
    at = datetime(2031, 1, 7, 10, 0, tzinfo=UTC)  # a Tuesday
    due = engine.calendar.add_working_days(at, 3)
    assert due.astimezone(engine.calendar.tz).date().isoformat() == "2031-01-11"


def test_the_historys_likeliest_handling_that_fits_the_place_is_taken(engine):
    # The history says "a street office" most likely, but no street is known: its next likeliest
    # handling that fits (the district's housing bureau) decides, not the taxonomy's rule.
    from services.grading.places import Places
    from services.grading.routing import route

    places = Places(districts=["a3"])
    learned = [("street@street", 0.55), ("housing@district", 0.35), ("police@district", 0.05)]
    r = route(bundle=engine.bundle, department_type="urban_mgmt", places=places, learned=learned)
    assert r.lead.code == "a3-housing" and r.rule == "history_district"
    # Below the policy's confidence nothing of the history counts.
    learned = [("street@street", 0.55), ("housing@district", 0.2)]
    r = route(bundle=engine.bundle, department_type="urban_mgmt", places=places, learned=learned)
    assert r.lead.code == "a3-urban_mgmt" and r.rule == "district"
    # With the street known the likeliest applies.
    places = Places(districts=["a3"], streets=["洋湖街道"])
    r = route(bundle=engine.bundle, department_type="urban_mgmt", places=places, learned=learned)
    assert r.lead.code == "a3-yanghu" and r.rule == "history_street"


def test_a_reply_of_a_county_level_city_means_its_own_bureau_by_shi(engine):
    from services.grading.route_eval import ReplyReader

    reader = ReplyReader(engine.bundle)
    reply = "您好！经市教育局调查核实，该校寒假补课收费问题属实，已责令退还。"
    assert reader.answering_unit(reply, "a9", county_city=True).unit.code == "a9-education"
    assert reader.answering_unit(reply, "a5").unit.code == "city-education"
    assert reader.answering_unit("经区教育局核实，情况属实。", "a5").unit.code == "a5-education"


def test_strong_terms_of_another_department_decide_the_competent_type(engine):
    # The level-1 model may say 交通运输 for a message about 交警: the taxonomy's terms of 政法/交通管理
    # weigh enough (policy routing.term_department_min_score, term_department_margin) to route to police.
    from services.grading.routing import competent_type

    b = engine.bundle
    assert competent_type(bundle=b, category_type="transport", department_scores={"police": 6.0}) == "police"
    assert (
        competent_type(
            bundle=b, category_type="transport", department_scores={"police": 6.0, "transport": 4.0}
        )
        == "transport"
    )  # not clearly stronger than the category's own type
    assert (
        competent_type(bundle=b, category_type="transport", department_scores={"police": 1.5}) == "transport"
    )
    assert competent_type(bundle=b, category_type=None, department_scores={}) is None
    g = engine.grade(
        msg("请求A7县交警在东二线路段执法常态化", "A7县东二线路段经常有车辆违停，请求交警执法常态化。")
    )
    assert g.department_type == "police" and g.route.lead.code == "a7-police"


def test_police_and_medical_insurance_matters_by_their_general_terms(engine):
    g = engine.grade(msg("咨询A7县落户的问题", "请问外地户口怎么在A7县落户？"))
    assert g.department_type == "police" and g.route.lead.code == "a7-police"
    g = engine.grade(msg("关于规范A7县机动车鸣笛的建议", "A7县城区机动车乱鸣笛、闯红灯现象较多，建议规范。"))
    assert g.department_type == "police" and g.route.lead.code == "a7-police"
    g = engine.grade(msg("咨询A7县异地就医报销的问题", "请问在外地住院，异地就医的医保怎么报销？"))
    assert g.department_type == "medical_insurance" and g.route.lead.code == "a7-medical_insurance"


def test_bus_lines_of_an_urban_district_are_the_citys(engine):
    # policy routing.city_level: the city runs the bus lines of its urban districts, a county its own.
    g = engine.grade(msg("希望优化A5区井莲路的公交线路", "A5区井莲路附近公交车太少，希望增加公交线路。"))
    assert g.route.lead.code == "city-transport" and g.route.rule == "city_level"
    assert [u.code for u in g.route.co] == ["a5-transport"] and "市级" in g.route.reason
    g = engine.grade(msg("希望增加A7县的公交线路", "A7县县城的公交车太少，希望增加公交线路。"))
    assert g.route.lead.code == "a7-transport" and g.route.rule == "district"
    # Other transport matters of a district stay with the district.
    g = engine.grade(msg("A5区某道路客运车辆超载", "A5区的长途客车经常超载，请运管部门查处。"))
    assert g.route.lead.code == "a5-transport"


def test_noise_from_night_stalls_goes_to_city_management(engine):
    g = engine.grade(
        msg("A2区某小区楼下夜宵摊噪音扰民", "A2区某小区楼下夜宵摊每晚噪音扰民到凌晨，居民无法休息。")
    )
    assert g.department_type == "urban_mgmt" and g.route.lead.code == "a2-urban_mgmt"


def test_the_place_memory_keeps_only_words_that_name_one_street_again_and_again():
    from services.grading.routing_model import train_route_model

    texts = [f"留言{i}" for i in range(9)]
    labels = ["street@street"] * 3 + ["education@district"] * 3 + ["housing@district"] * 3
    streets = [
        ("反映火车站周边乱停车", "白马桥街道"),
        ("火车站附近夜市噪音大", "白马桥街道"),
        ("投诉阳光幼儿园乱收费", "洞井街道"),
        ("咨询某某幼儿园招生", None),  # 幼儿园 also went to the education bureau: no place
        ("反映立交桥下垃圾成堆", "金盆岭街道"),  # seen once: chance
    ]
    model = train_route_model(texts=texts, labels=labels, streets=streets)
    assert model.street_for(["火车站"]) == ("白马桥街道", 2)
    assert model.street_for(["幼儿园"]) is None and model.street_for(["立交桥"]) is None


def test_the_history_may_say_a_district_matter_is_handled_at_city_level(engine):
    # Metro line planning naming one district is answered by the city's planning bureau: the history
    # decides so even for a type a district has; "the government" of one district stays local.
    from services.grading.places import Places
    from services.grading.routing import route

    places = Places(districts=["a3"])
    r = route(bundle=engine.bundle, department_type="metro", places=places, learned=[("planning@city", 0.45)])
    assert r.lead.code == "city-planning" and r.rule == "history_city"
    r = route(
        bundle=engine.bundle, department_type="housing", places=places, learned=[("government@city", 0.45)]
    )
    assert r.lead.code == "a3-housing" and r.rule == "district"
