"""The configuration bundle: loaded and checked, refused with file and line, the last good one kept."""

import pytest

from services.grading.bundle import BundleError, BundleHolder, load_bundle
from services.grading.tests.helpers import BUNDLE, bundle_copy, line_of, replace_in

pytestmark = pytest.mark.once


def test_the_sample_bundle_loads_with_real_looking_units_and_places():
    b = load_bundle(BUNDLE)
    assert b.policy_version and b.dispatch.code == "city-dispatch"
    assert b.unit_for(jurisdiction="a7", department_type="education").name == "A7县教育局"
    assert b.street_unit("桂花坪街道").name == "A2区桂花坪街道办事处"
    assert len(b.districts) == 9 and sum(len(d.streets) for d in b.districts.values()) > 150
    # every category's department type has a unit
    served = {u.type for u in b.units.values()}
    assert {p.department_type for p in b.categories} <= served


def _refused(directory, file: str) -> list[str]:
    with pytest.raises(BundleError) as exc:
        load_bundle(directory)
    assert all(p.split(":")[0] for p in exc.value.problems)
    return [p for p in exc.value.problems if p.startswith(file + ":")]


def test_unknown_parent_unit_is_refused_naming_the_line(tmp_path):
    d = bundle_copy(tmp_path)
    org = d / "org.yaml"
    replace_in(
        org,
        "{code: a3-education, name: A3区教育局, type: education, parent: a3-gov",
        "{code: a3-education, name: A3区教育局, type: education, parent: nowhere",
    )
    [problem] = _refused(d, "org.yaml")
    assert f"org.yaml:{line_of(org, 'code: a3-education')}:" in problem and "nowhere" in problem


def test_a_cycle_in_the_directory_is_refused(tmp_path):
    d = bundle_copy(tmp_path)
    org = d / "org.yaml"
    replace_in(
        org,
        "{code: city-gov, name: A市人民政府, type: government, parent: null",
        "{code: city-gov, name: A市人民政府, type: government, parent: a1-gov",
    )
    problems = _refused(d, "org.yaml")
    assert any("cycle" in p and "city-gov" in p for p in problems), problems


def test_a_category_mapped_to_no_unit_is_refused_naming_the_line(tmp_path):
    d = bundle_copy(tmp_path)
    tax = d / "taxonomy.yaml"
    replace_in(
        tax,
        "{name: 公园管理, terms: [公园, 广场舞]}",
        "{name: 公园管理, department_type: parks_board, terms: [公园]}",
    )
    [problem] = _refused(d, "taxonomy.yaml")
    assert f"taxonomy.yaml:{line_of(tax, 'parks_board')}:" in problem and "parks_board" in problem


def test_overlapping_thresholds_are_refused_naming_the_line(tmp_path):
    d = bundle_copy(tmp_path)
    policy = d / "policy.yaml"
    replace_in(
        policy,
        "level_thresholds: {I: 80, II: 55, III: 30, IV: 0}",
        "level_thresholds: {I: 50, II: 55, III: 30, IV: 0}",
    )
    [problem] = _refused(d, "policy.yaml")
    assert f"policy.yaml:{line_of(policy, 'level_thresholds')}:" in problem and "overlap" in problem


def test_unknown_dispatch_unit_and_bad_yaml_are_refused(tmp_path):
    d = bundle_copy(tmp_path)
    replace_in(d / "policy.yaml", "dispatch_unit: city-dispatch", "dispatch_unit: ghost")
    assert any("ghost" in p for p in _refused(d, "policy.yaml"))
    (d / "gazetteer.yaml").write_text("districts: [\n  - {code: a1\n", encoding="utf-8")
    assert any("not valid YAML" in p for p in _refused(d, "gazetteer.yaml"))


def test_a_city_level_rule_naming_an_unknown_category_or_district_is_refused(tmp_path):
    d = bundle_copy(tmp_path)
    policy = d / "policy.yaml"
    replace_in(
        policy,
        "{category: 城乡建设/城市建设和市政管理/公共汽车, districts: [a1,",
        "{category: 公交, districts: [x9,",
    )
    problems = _refused(d, "policy.yaml")
    assert any("'公交'" in p for p in problems) and any("'x9'" in p for p in problems), problems
    assert all(f"policy.yaml:{line_of(policy, 'category: 公交')}:" in p for p in problems)


def test_a_failed_reload_keeps_the_last_good_bundle(tmp_path):
    d = bundle_copy(tmp_path)
    holder = BundleHolder(d)
    good = holder.current
    replace_in(d / "policy.yaml", 'version: "', 'version: "bad-')
    replace_in(d / "policy.yaml", "level_thresholds: {I: 80,", "level_thresholds: {I: 20,")
    result = holder.reload()
    assert not result.ok and holder.current is good and holder.last_error
    replace_in(d / "policy.yaml", "level_thresholds: {I: 20,", "level_thresholds: {I: 85,")
    result = holder.reload()
    assert result.ok and holder.current.policy_version.startswith("bad-") and not holder.last_error


def test_streets_are_found_by_their_short_forms_unless_shared_excepted_or_badly_configured(tmp_path):
    def short_forms(b) -> dict[str, tuple[str, ...]]:
        return {s.name: s.aliases for d in b.districts.values() for s in d.streets}

    forms = short_forms(load_bundle(BUNDLE))
    assert "新开铺" in forms["新开铺街道"] and "左家塘" in forms["左家塘街道"]
    assert "浏阳河" not in forms["浏阳河街道"]  # excepted: the river flows through several districts
    assert not any(a in ("北路", "朝阳") for a in forms["北路街道"] + forms["朝阳街道"])  # under min_chars

    d = bundle_copy(tmp_path)
    gaz = d / "gazetteer.yaml"
    # Two streets that would share a short form get none; an existing name is never a short form.
    replace_in(gaz, "- {name: 新开铺街道}", "- {name: 新开铺街道}\n  - {name: 新开铺镇}")
    forms = short_forms(load_bundle(d))
    assert "新开铺" not in forms["新开铺街道"] + forms["新开铺镇"]
    replace_in(gaz, "  min_chars: 3\n", "  min_chars: three\n")
    [problem] = _refused(d, "gazetteer.yaml")
    assert f"gazetteer.yaml:{line_of(gaz, 'street_short_forms:')}:" in problem and "min_chars" in problem
