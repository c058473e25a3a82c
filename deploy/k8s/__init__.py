"""Kubernetes manifests (kustomize) and a Python renderer for them."""
