"""Training the category model with scikit-learn (commands and worker threads only: the service
itself never imports this module, it loads the compiled result)."""

from datetime import UTC, datetime

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator, TransformerMixin

from services.grading.bundle import Bundle
from services.grading.classifier import CategoryModel, TaxonomyIndex, title_boost
from services.grading.linear import FastLinear, TermFeatures


class TaxonomyFeatures(TermFeatures, BaseEstimator, TransformerMixin):
    """TermFeatures as a scikit-learn transformer."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        rows = [self.dense(text) for text in X]
        return csr_matrix(np.array(rows).reshape(len(X), len(self.level1 or [])))


def _title_boost(texts):
    return [title_boost(t) for t in texts]


def build_pipeline(index: TaxonomyIndex, *, c: float = 0.5, calibrate: bool = True):
    """The trainable model: char 1–2-gram TF-IDF + taxonomy features → (calibrated) linear SVM."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import LinearSVC

    chars = make_pipeline(
        FunctionTransformer(_title_boost),
        TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
    )
    taxonomy = TaxonomyFeatures(index.level1, index.l1_terms, weight=0.5)
    svm = LinearSVC(C=c, class_weight="balanced")
    head = CalibratedClassifierCV(svm, cv=3, method="sigmoid") if calibrate else svm
    return Pipeline([("features", FeatureUnion([("chars", chars), ("taxonomy", taxonomy)])), ("clf", head)])


def fit_pipeline(*, bundle: Bundle, texts: list[str], labels: list[str]):
    """The fitted scikit-learn pipeline (tests compare the compiled model against it)."""
    pipeline = build_pipeline(TaxonomyIndex(bundle))
    pipeline.fit(texts, labels)
    return pipeline


def train_model(*, bundle: Bundle, texts: list[str], labels: list[str], source: str = "") -> CategoryModel:
    """Fit the model on labelled texts and compile it (CPU-heavy: a command or a worker thread)."""
    pipeline = fit_pipeline(bundle=bundle, texts=texts, labels=labels)
    compiled = FastLinear.from_pipeline(pipeline, prep=title_boost)
    return CategoryModel(
        compiled=compiled,
        labels=list(compiled.classes),
        trained_at=datetime.now(UTC),
        samples=len(texts),
        source=source,
    )
