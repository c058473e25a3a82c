"""Measuring the classifier on labelled messages: k-fold cross-validation and a hold-out split."""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.grading.bundle import Bundle
from services.grading.classifier import Classifier
from services.grading.text import message_text
from services.grading.training import train_model


@dataclass
class Labelled:
    """A labelled historical message."""

    title: str
    body: str
    label: str

    @property
    def text(self) -> str:
        return message_text(self.title, self.body)


def read_labelled(path: Path) -> list[Labelled]:
    """Rows of a JSONL or CSV file with title, body (or content) and category (or level1)."""
    path = Path(path)
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    out = []
    for i, r in enumerate(rows, start=1):
        label = r.get("category") or r.get("level1")
        body = r.get("body") or r.get("content") or ""
        if not label or not (body or r.get("title")):
            raise ValueError(f"{path.name} row {i}: needs title/body and category")
        out.append(Labelled(str(r.get("title") or ""), str(body), str(label).split("/")[0]))
    return out


def _predict(bundle: Bundle, train: list[Labelled], test: list[Labelled]) -> list[str | None]:
    model = train_model(bundle=bundle, texts=[r.text for r in train], labels=[r.label for r in train])
    clf = Classifier(bundle, model)
    return [p.path.level1 if p.path else None for p in clf.classify_many([r.text for r in test])]


def cross_validate(*, bundle: Bundle, rows: list[Labelled], folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Stratified k-fold: macro-F1, accuracy and a per-class report of the whole decision (model + rules)."""
    from sklearn.metrics import accuracy_score, classification_report, f1_score
    from sklearn.model_selection import StratifiedKFold

    labels = np.array([r.label for r in rows])
    pred: list[str] = [""] * len(rows)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(rows, labels):
        got = _predict(bundle, [rows[i] for i in train_idx], [rows[i] for i in test_idx])
        for i, p in zip(test_idx, got, strict=True):
            pred[i] = p or "(none)"
    return {
        "folds": folds,
        "samples": len(rows),
        "macro_f1": round(float(f1_score(labels, pred, average="macro", labels=sorted(set(labels)))), 4),
        "accuracy": round(float(accuracy_score(labels, pred)), 4),
        "report": classification_report(labels, pred, labels=sorted(set(labels)), zero_division=0),
    }


def holdout(*, bundle: Bundle, rows: list[Labelled], share: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Train on the rest, measure on a stratified share nobody trained on."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    labels = [r.label for r in rows]
    train, test = train_test_split(rows, test_size=share, stratify=labels, random_state=seed)
    got = [p or "(none)" for p in _predict(bundle, train, test)]
    truth = [r.label for r in test]
    return {
        "train": len(train),
        "test": len(test),
        "accuracy": round(float(accuracy_score(truth, got)), 4),
        "macro_f1": round(float(f1_score(truth, got, average="macro", labels=sorted(set(truth)))), 4),
    }


def cold_start_accuracy(*, bundle: Bundle, rows: list[Labelled]) -> dict[str, Any]:
    """How the taxonomy's terms alone do (no training at all)."""
    from sklearn.metrics import accuracy_score, f1_score

    clf = Classifier(bundle, None)
    got = [p.path.level1 if p.path else "(none)" for p in clf.classify_many([r.text for r in rows])]
    truth = [r.label for r in rows]
    return {
        "samples": len(rows),
        "accuracy": round(float(accuracy_score(truth, got)), 4),
        "macro_f1": round(float(f1_score(truth, got, average="macro", labels=sorted(set(truth)))), 4),
    }
