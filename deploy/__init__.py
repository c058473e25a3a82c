"""Deployment: the local launcher, container and Kubernetes files, sample bundles."""
