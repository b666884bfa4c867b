"""Run servers on GKE: capacity, manifests, readiness, teardown, RBAC."""
