"""Grading's commands: train the models on a city's history, measure them, find the hottest matters.

    python -m services.grading.cli train --data history.jsonl          # category model (JSONL or CSV)
    python -m services.grading.cli train-routing --data replies.jsonl  # routing learned from replies
    python -m services.grading.cli evaluate --data labelled.jsonl      # 5-fold macro-F1, hold-out accuracy
    python -m services.grading.cli route-eval --data replies.jsonl     # agreement with the answering units
    python -m services.grading.cli hot --data votes.jsonl --top 5      # the hottest matters, with messages
    python -m services.grading.cli prepare                             # what `make run` does before starting

Models go to var/models/ (GRADING_MODEL_PATH, GRADING_ROUTE_MODEL_PATH override); they embed the
training data, so they are never committed.
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kit.settings import REPO_ROOT
from schema.dto import Metrics
from schema.enums import Channel
from schema.events import MessageReceivedData
from services.grading.bundle import BundleError, load_bundle
from services.grading.classifier import CategoryModel
from services.grading.clustering import MatterIndex
from services.grading.config import GradingSettings
from services.grading.grader import Engine
from services.grading.heat import STAGE_TEXT, HeatInput, heat_of, interactions_of
from services.grading.routing_model import RouteModel, train_route_model
from services.grading.training import train_model

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _settings() -> GradingSettings:
    return GradingSettings()


def _bundle(args):
    return load_bundle(Path(args.bundle) if args.bundle else _settings().bundle_dir)


def _load_category_model(settings: GradingSettings) -> CategoryModel | None:
    path = settings.resolved_model_path()
    return CategoryModel.load(path) if path.exists() else None


def cmd_train(args) -> int:
    """Train the category model on labelled history and save it."""
    from services.grading.evaluation import read_labelled

    bundle = _bundle(args)
    rows = read_labelled(Path(args.data))
    started = time.perf_counter()
    model = train_model(
        bundle=bundle,
        texts=[r.text for r in rows],
        labels=[r.label for r in rows],
        source=Path(args.data).name,
    )
    out = Path(args.out) if args.out else _settings().resolved_model_path()
    model.save(out)
    print(
        f"trained on {len(rows)} messages ({', '.join(model.labels)}) "
        f"in {time.perf_counter() - started:.1f}s → {out}"
    )
    return 0


def cmd_train_routing(args) -> int:
    """Learn routing from the replies of past messages and save it."""
    from services.grading.route_eval import history_training_set

    bundle = _bundle(args)
    engine = Engine(bundle, _load_category_model(_settings()))
    texts, labels, streets = history_training_set(engine=engine, path=Path(args.data))
    model = train_route_model(texts=texts, labels=labels, streets=streets, source=Path(args.data).name)
    out = Path(args.out) if args.out else _settings().resolved_route_model_path()
    model.save(out)
    print(
        f"routing learned from {model.samples} answered messages "
        f"({len(model.street_memory)} place words) → {out}"
    )
    return 0


def cmd_evaluate(args) -> int:
    """Cross-validated macro-F1, hold-out accuracy and the cold start on labelled messages."""
    from services.grading.evaluation import cold_start_accuracy, cross_validate, holdout, read_labelled

    bundle = _bundle(args)
    rows = read_labelled(Path(args.data))
    started = time.perf_counter()
    cv = cross_validate(bundle=bundle, rows=rows, folds=args.folds)
    ho = holdout(bundle=bundle, rows=rows, share=args.holdout)
    cold = cold_start_accuracy(bundle=bundle, rows=rows)
    print(f"{args.folds}-fold cross-validation on {cv['samples']} messages:")
    print(f"  macro-F1 {cv['macro_f1']:.4f}   accuracy {cv['accuracy']:.4f}")
    print(cv["report"])
    print(
        f"hold-out ({ho['test']} messages never trained on, {ho['train']} trained): "
        f"accuracy {ho['accuracy']:.4f}, macro-F1 {ho['macro_f1']:.4f}"
    )
    print(
        f"cold start (taxonomy terms only, no training): accuracy {cold['accuracy']:.4f}, "
        f"macro-F1 {cold['macro_f1']:.4f}"
    )
    print(f"({time.perf_counter() - started:.1f}s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"cv": {k: v for k, v in cv.items() if k != "report"}, "holdout": ho, "cold_start": cold},
                ensure_ascii=False,
                indent=2,
            )
        )
    return 0


def cmd_route_eval(args) -> int:
    """Routing compared with the units that answered, rules alone and learned from history (k-fold)."""
    from services.grading.route_eval import cross_validate_routing, evaluate_routing

    bundle = _bundle(args)
    engine = Engine(bundle, _load_category_model(_settings()))
    rules = evaluate_routing(engine=engine, path=Path(args.data), examples=args.examples)
    print("rules (taxonomy + gazetteer + policy, no history):")
    print("  " + json.dumps(rules.as_dict(), ensure_ascii=False))
    for ex in rules.examples:
        print(
            f"  ✗ {ex['title'][:40]} → {ex['routed']}; "
            f"the reply names {ex['reply_unit']} ({ex['reply_names']})"
        )
    if args.cv:
        learned = cross_validate_routing(engine=engine, path=Path(args.data), folds=args.cv)
        print(
            f"rules refined by routing learned from replies ({args.cv}-fold, each fold routed by a model "
            "that never saw it):"
        )
        print("  " + json.dumps(learned.as_dict(), ensure_ascii=False))
    return 0


@dataclass
class _Matter:
    id: int
    title: str
    messages: list[dict] = field(default_factory=list)
    channels: set[str] = field(default_factory=set)
    metrics: dict[str, int] = field(default_factory=dict)


def hot_matters(*, engine: Engine, path: Path, top: int = 5) -> list[dict]:
    """Cluster a file of messages in time order the way grading does and rank the matters by heat."""
    index = MatterIndex(engine.policy.clustering)
    matters: dict[str, _Matter] = {}
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: r.get("time") or "")
    for n, row in enumerate(rows):
        at = datetime.fromisoformat(row["time"])
        feats = index.features(row.get("title"), row.get("body") or "")
        found = index.lookup(feats, at)
        key = found[0].incident_id if found else f"m{n}"
        m = matters.setdefault(key, _Matter(len(matters) + 1, row.get("title") or ""))
        m.messages.append(
            {**row, "_at": at, "_how": (found[0].kind, found[0].similarity) if found else ("new", 1.0)}
        )
        m.channels.add(Channel.portal.value)
        for k in ("likes", "dislikes"):
            m.metrics[k] = m.metrics.get(k, 0) + int(row.get(k) or 0)
        index.add(str(row.get("id", n)), key, feats, at)
    now = max(datetime.fromisoformat(r["time"]) for r in rows)
    ranked = []
    for m in matters.values():
        last = max(x["_at"] for x in m.messages)
        window = engine.policy.heat.growth_window_hours * 3600
        recent = sum(1 for x in m.messages if (last - x["_at"]).total_seconds() <= window)
        heat, stage, parts = heat_of(
            engine.policy,
            HeatInput(len(m.messages), interactions_of(m.metrics), sorted(m.channels), recent, 0, last, now),
        )
        first = m.messages[0]
        msg = MessageReceivedData(
            message_id="hot",
            tracking_code="hot",
            channel=Channel.portal,
            title=first.get("title"),
            content=first.get("body") or "",
            received_at=first["_at"],
            metrics=Metrics(likes=m.metrics.get("likes", 0), dislikes=m.metrics.get("dislikes", 0)),
        )
        g = engine.grade(msg)
        ranked.append(
            {
                "heat": heat,
                "stage": stage,
                "parts": parts,
                "messages": m.messages,
                "likes": m.metrics.get("likes", 0),
                "dislikes": m.metrics.get("dislikes", 0),
                "category": g.category.level1 + "/" + (g.category.level2 or "") if g.category else "—",
                "route": g.route.lead.name,
                "first": min(x["_at"] for x in m.messages),
                "last": last,
            }
        )
    ranked.sort(key=lambda r: (-r["heat"], -len(r["messages"])))
    return ranked[:top]


def cmd_hot(args) -> int:
    """Print the hottest matters of a messages file with their messages."""
    bundle = _bundle(args)
    engine = Engine(bundle, _load_category_model(_settings()))
    started = time.perf_counter()
    top = hot_matters(engine=engine, path=Path(args.data), top=args.top)
    for i, m in enumerate(top, start=1):
        print(
            f"#{i} heat {m['heat']:.1f} ({STAGE_TEXT[m['stage']]}) · {len(m['messages'])} messages · "
            f"👍 {m['likes']} 👎 {m['dislikes']} · {m['first']:%Y-%m-%d} – {m['last']:%Y-%m-%d} · "
            f"{m['category']} → {m['route']}"
        )
        for x in sorted(m["messages"], key=lambda x: x["_at"])[: args.show]:
            how = "" if x["_how"][0] == "new" else f" [{x['_how'][0]} {x['_how'][1]:.2f}]"
            print(f"    {x['_at']:%Y-%m-%d} #{x['id']} 👍{x.get('likes', 0)} {x.get('title', '')[:60]}{how}")
        if len(m["messages"]) > args.show:
            print(f"    … and {len(m['messages']) - args.show} more")
    print(f"({time.perf_counter() - started:.1f}s)")
    return 0


def _loads(kind, path: Path) -> bool:
    """Whether a model file is there and readable (a file of an older format is trained again)."""
    try:
        kind.load(path)
    except FileNotFoundError:
        return False
    except Exception as exc:
        print(f"grading: {path} cannot be read ({exc}); training it again")
        return False
    return True


def cmd_prepare(args) -> int:
    """Before the platform starts: train missing models from ../shared/data when it is there."""
    settings = _settings()
    data = Path(args.data_dir) if args.data_dir else SHARED_DATA
    labelled, replies = data / "messages_labeled_train.jsonl", data / "messages_with_replies.jsonl"
    cat_path, route_path = settings.resolved_model_path(), settings.resolved_route_model_path()
    if not _loads(CategoryModel, cat_path):
        if labelled.exists():
            cmd_train(argparse.Namespace(bundle=args.bundle, data=str(labelled), out=str(cat_path)))
        else:
            print(f"grading: no {labelled}; the category classifier starts cold from the taxonomy's terms")
    if not _loads(RouteModel, route_path):
        if replies.exists():
            cmd_train_routing(argparse.Namespace(bundle=args.bundle, data=str(replies), out=str(route_path)))
        else:
            print(f"grading: no {replies}; routing follows the rules alone")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m services.grading.cli`."""
    parser = argparse.ArgumentParser(prog="grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="bundle directory (default: MINSHENG_BUNDLE_DIR or the sample A市)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the category model")
    p.add_argument("--data", required=True, help="JSONL or CSV with title, body, category")
    p.add_argument("--out", help="model file (default var/models/grading-category.pkl)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("train-routing", help="learn routing from the replies of past messages")
    p.add_argument("--data", required=True, help="JSONL with title, body, reply")
    p.add_argument("--out", help="model file (default var/models/grading-routing.pkl)")
    p.set_defaults(fn=cmd_train_routing)
    p = sub.add_parser("evaluate", help="cross-validate the category classifier")
    p.add_argument("--data", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--json", help="also write the figures to this file")
    p.set_defaults(fn=cmd_evaluate)
    p = sub.add_parser("route-eval", help="compare routing with the units that answered")
    p.add_argument("--data", required=True)
    p.add_argument("--cv", type=int, default=5, help="folds for the learned routing (0: rules only)")
    p.add_argument("--examples", type=int, default=0, help="show this many disagreements")
    p.set_defaults(fn=cmd_route_eval)
    p = sub.add_parser("hot", help="the hottest matters of a messages file")
    p.add_argument("--data", required=True)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--show", type=int, default=8, help="messages shown per matter")
    p.set_defaults(fn=cmd_hot)
    p = sub.add_parser("prepare", help="train missing models from the shared data (make run)")
    p.add_argument("--data-dir", help=f"default {SHARED_DATA}")
    p.set_defaults(fn=cmd_prepare)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except BundleError as exc:
        print("bundle refused:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["RouteModel", "main"]
