"""Render a kustomization in Python (no kustomize binary needed), for the subset these manifests use.

    python -m deploy.k8s.render deploy/k8s/overlays/production > production.yaml

Supported: `resources` (files and directories with their own kustomization), `namespace`, `labels`
(pairs, includeSelectors: false, includeTemplates), `images` (newName/newTag), `replicas`, and
`patches` as inline JSON 6902 operations with a kind/name target. Anything else is refused loudly
rather than rendered wrong. The ops tests check the output equals `kubectl kustomize` where kubectl
is installed; `kubectl apply -k` is what deploys.
"""

import copy
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kind = doc.get("kind")
    if kind in WORKLOADS:
        return [doc["spec"]["template"]]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]]
    return []


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The resources a kustomization directory produces."""
    directory = Path(directory)
    k = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(k) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        target = directory / res
        docs += render(target) if target.is_dir() else _load_docs(target)
    docs = copy.deepcopy(docs)
    for p in k.get("patches", []):
        _apply_patch(docs, p, directory)
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("labels", []):
        if entry.get("includeSelectors"):
            raise ValueError("labels with includeSelectors are not supported")
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(entry["pairs"])
            if entry.get("includeTemplates"):
                for t in _pod_templates(d):
                    t.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in k.get("images", []):
        for d in docs:
            for t in _pod_templates(d):
                for c in t["spec"].get("containers", []) + t["spec"].get("initContainers", []):
                    name, _, tag = c["image"].partition(":")
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for rep in k.get("replicas", []):
        for d in docs:
            if (
                d["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")
                and d["metadata"]["name"] == rep["name"]
            ):
                d["spec"]["replicas"] = rep["count"]
    return docs


def _apply_patch(docs: list[dict[str, Any]], p: dict[str, Any], directory: Path) -> None:
    target = p.get("target") or {}
    if set(target) - {"kind", "name"} or ("patch" not in p and "path" not in p):
        raise ValueError(f"unsupported patch {p}")
    ops = yaml.safe_load(p["patch"] if "patch" in p else (directory / p["path"]).read_text(encoding="utf-8"))
    if not isinstance(ops, list):
        raise ValueError("only JSON 6902 patches (a list of operations) are supported")
    matched = 0
    for i, d in enumerate(docs):
        kind_ok = "kind" not in target or d.get("kind") == target["kind"]
        if kind_ok and ("name" not in target or d["metadata"]["name"] == target["name"]):
            docs[i] = jsonpatch.apply_patch(d, ops)
            matched += 1
    if not matched:
        raise ValueError(f"patch target {target} matches nothing")


def main(argv: list[str] | None = None) -> int:
    """Print the rendered documents as YAML."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(render(args[0]), sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
