"""Same-matter index, the trainable classifier and the commands, on small data (fast)."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.grading import cli
from services.grading.bundle import load_bundle
from services.grading.classifier import CategoryModel, Classifier, title_boost
from services.grading.clustering import MatterIndex, affine32_permutations, lsh_banding
from services.grading.evaluation import read_labelled
from services.grading.linear import CharNgrams, FastLinear, gram_code
from services.grading.tests.helpers import BUNDLE, DATA
from services.grading.training import fit_pipeline, train_model

pytestmark = pytest.mark.once
LABELLED = DATA / "messages_labeled_train.jsonl"
needs_data = pytest.mark.skipif(not LABELLED.exists(), reason="../shared/data is not here")


def _head(path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


def test_near_duplicates_and_the_same_matter_join_and_other_matters_stay_apart(bundle):
    index = MatterIndex(bundle.policy.clustering)
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)

    feats = {}

    def put(mid, title, body, inc, at=t0):
        f = feats[mid] = index.features(title, body)
        found = index.lookup(f, at)
        index.add(mid, found[0].incident_id if found else inc, f, at)
        return found

    assert (
        put(
            "1",
            "A2区丽发新城附近建搅拌站噪音扰民",
            "丽发新城小区旁边新建搅拌站，日夜施工，噪音和粉尘严重。",
            "i1",
        )
        == []
    )
    dup = put(
        "2",
        "A2区丽发新城附近建搅拌站噪音扰民！",
        "丽发新城小区旁边新建搅拌站，日夜施工，噪音和粉尘严重。",
        "x",
    )
    assert dup and dup[0].incident_id == "i1" and dup[0].kind == "near_duplicate"
    same = put("3", "丽发新城小区附近的搅拌站严重扰民", "请环保部门查处丽发新城旁的非法搅拌站。", "y")
    assert same and same[0].incident_id == "i1" and same[0].kind == "same_matter"
    assert put("4", "A7县星沙某小学强制补课", "学校周末强制补课收费。", "i4") == []
    # Outside the window the old matter takes nothing.
    late = index.features(
        "A2区丽发新城附近建搅拌站噪音扰民", "丽发新城小区旁边新建搅拌站，日夜施工，噪音和粉尘严重。"
    )
    assert index.lookup(late, t0 + timedelta(days=bundle.policy.clustering.window_days + 1)) == []
    # Messages moved by a split follow their new incident.
    index.move(["3"], "i9", {"3": feats["3"]})
    assert index.incident_of("3") == "i9" and index.members("i1") == 2 and index.members("i9") == 1


@needs_data
def test_a_trained_model_classifies_saves_and_loads(bundle, tmp_path):
    rows = read_labelled(LABELLED)[::3]  # a third of the data keeps the test fast
    model = train_model(bundle=bundle, texts=[r.text for r in rows], labels=[r.label for r in rows])
    path = tmp_path / "m.pkl"
    model.save(path)
    clf = Classifier(bundle, CategoryModel.load(path))
    p = clf.classify("A3区某小学乱收补课费\n学校强制学生参加补课并收取费用，教育局不管。")
    assert clf.mode == "model" and p.source == "model" and p.path.level1 == "教育文体"
    assert 0 < p.confidence <= 1 and len(p.runners_up) == bundle.policy.classifier.runners_up
    assert p.runners_up[0][1] <= p.confidence


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.once
def test_a_model_file_that_names_other_code_or_an_older_format_is_refused_not_run(tmp_path):
    """Model files are unpickled with an allowlist: one that would call anything else (here a shell
    command) is refused before it runs; a file of the joblib format before is refused as such, and
    `prepare` trains that model again."""
    import pickle

    import joblib

    from services.grading.routing_model import RouteModel

    marker = tmp_path / "ran"
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"format": 3, "kind": None, "model": _RunsACommand(marker)}))
    with pytest.raises(ValueError, match=r"may not name (posix|os)\.system"):
        CategoryModel.load(path)
    assert not marker.exists()
    # Only the models' classes, not every name of their modules (this one writes files).
    from services.grading.linear import save_file

    path.write_bytes(pickle.dumps({"format": 3, "kind": None, "model": save_file}))
    with pytest.raises(ValueError, match=r"may not name services\.grading\.linear\.save_file"):
        CategoryModel.load(path)
    old = tmp_path / "old.pkl"
    joblib.dump({"format": 2, "kind": "routing", "model": {"weights": np.zeros((3, 2))}}, old)
    with pytest.raises(ValueError, match="not a grading model file of this version"):
        RouteModel.load(old)
    assert cli._loads(RouteModel, old) is False


@needs_data
def test_the_compiled_model_gives_the_fitted_pipelines_probabilities(bundle, tmp_path):
    rows = read_labelled(LABELLED)
    train, test = rows[::3], rows[1::7]
    pipeline = fit_pipeline(bundle=bundle, texts=[r.text for r in train], labels=[r.label for r in train])
    compiled = FastLinear.from_pipeline(pipeline, prep=title_boost)
    model = CategoryModel(compiled=compiled, labels=compiled.classes, trained_at=datetime.now(UTC), samples=1)
    model.save(tmp_path / "m.pkl")
    loaded = CategoryModel.load(tmp_path / "m.pkl")
    texts = [r.text for r in test] + ["", "  A  b\n\tC  "]
    assert loaded.labels == [str(c) for c in pipeline.classes_]
    # 8-bit coefficients: every probability within 0.01 of scikit-learn's (≈ 0.005 measured), and the
    # same best label.
    ours, theirs = loaded.predict_proba(texts), pipeline.predict_proba(texts)
    assert loaded.compiled.weights.dtype == np.int8
    assert np.abs(ours - theirs).max() < 0.01
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()
    # The coded vocabulary decodes to scikit-learn's, and the dict look-up gives the same numbers.
    tfidf = dict(pipeline.named_steps["features"].transformer_list)["chars"].steps[-1][1]
    assert loaded.compiled.vocabulary_dict() == tfidf.vocabulary_
    twin = loaded.compiled.with_dict_lookup()
    assert np.allclose(twin.predict_proba(texts), loaded.compiled.predict_proba(texts), atol=1e-12)


def test_char_ngrams_are_scikit_learns():
    from sklearn.feature_extraction.text import TfidfVectorizer

    for ngrams in ((1, 2), (1, 3), (2, 3)):
        theirs = TfidfVectorizer(analyzer="char", ngram_range=ngrams).build_analyzer()
        for text in ("A3区  某小学\n\n乱收 费ABC", "", "x", "停水", "a\x00\x00b😀\U0010ffff"):
            assert CharNgrams(ngrams)(text) == theirs(text)
            # the numpy codes are the same n-grams, one code each, none shared between two n-grams
            grams = theirs(text)
            assert sorted(CharNgrams(ngrams).codes(text).tolist()) == sorted(gram_code(g) for g in grams)
            assert len({gram_code(g) for g in grams}) == len(set(grams))


def test_minhash_permutations_and_lsh_banding_are_datasketchs():
    from datasketch import MinHash, MinHashLSH

    from services.grading.clustering import _BAND_MIX

    for n in (32, 64, 128):
        assert (affine32_permutations(n, seed=1) == MinHash(num_perm=n, seed=1).permutations).all()
        for t in (0.3, 0.5, 0.6, 0.75, 0.9):
            lsh = MinHashLSH(threshold=t, num_perm=n)
            assert lsh_banding(t, n) == (lsh.b, lsh.r)
    # Drawn without numpy.random, yet as RandomState draws them, for any seed and count.
    for seed in (0, 1, 7, 12345, 2**32 - 1):
        for n in (1, 5, 128, 700):
            gen = np.random.RandomState(seed)
            a = gen.randint(0, 1 << 31, n, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
            b = gen.randint(0, 1 << 32, n, dtype=np.uint32)
            ours = affine32_permutations(n, seed=seed)
            assert ours.dtype == np.uint32 and (ours == np.array([a, b])).all()
    drawn = np.random.default_rng(0x4D53).integers(1, 2**63, size=16, dtype=np.uint64) | np.uint64(1)
    assert _BAND_MIX.dtype == np.uint64 and (drawn == _BAND_MIX).all()
    with pytest.raises(ValueError):
        lsh_banding(0.97, 16)


def test_cold_start_flags_low_confidence_and_returns_runners_up(bundle):
    clf = Classifier(bundle)
    clear = clf.classify("A5区某小区停水三天\n小区停水三天，自来水公司不管。")
    assert clear.source == "cold_start" and clear.path.level3 == "自来水供应" and not clear.low_confidence
    vague = clf.classify("有个问题\n希望有关部门重视一下学校和医院的事")
    assert vague.low_confidence and vague.runners_up
    assert clf.classify("你好\n在吗").path is None


@needs_data
def test_the_commands_train_evaluate_route_and_find_hot_matters(tmp_path, capsys):
    small = tmp_path / "labelled.jsonl"
    small.write_text(
        "".join(LABELLED.read_text(encoding="utf-8").splitlines(keepends=True)[::4]), encoding="utf-8"
    )
    out = tmp_path / "cat.pkl"
    assert cli.main(["train", "--data", str(small), "--out", str(out)]) == 0 and out.exists()
    assert (
        cli.main(["evaluate", "--data", str(small), "--folds", "2", "--json", str(tmp_path / "e.json")]) == 0
    )
    figures = json.loads((tmp_path / "e.json").read_text())
    assert 0 < figures["cv"]["macro_f1"] <= 1 and figures["holdout"]["test"] > 0
    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(_head(DATA / "messages_with_replies.jsonl", 150)), encoding="utf-8")
    assert cli.main(["route-eval", "--data", str(replies), "--cv", "0"]) == 0
    assert '"readable"' in capsys.readouterr().out
    votes = tmp_path / "votes.jsonl"
    lines = _head(DATA / "messages_with_votes.jsonl", 300)
    row = json.loads(lines[0])
    twins = [json.dumps({**row, "id": f"twin{i}", "likes": 500}, ensure_ascii=False) + "\n" for i in range(3)]
    votes.write_text("".join(lines + twins), encoding="utf-8")
    assert cli.main(["hot", "--data", str(votes), "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("#1 ") and "#3 " in text and row["title"][:20] in text.split("#2 ")[0]
