#!/usr/bin/env bash
# The real-engine deployment test, on its own: installs what it needs (docker.io, debootstrap,
# the compose plugin; idempotent), then runs tests/deploy/test_docker.py, which starts a
# private dockerd, builds the stand-in base image (cached in /var/cache/four11-ci), builds the
# images with services/*/Dockerfile, runs `docker compose --profile node up -d --wait`, checks
# it and tears everything down, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || make venv
bash scripts/ci-deps.sh
exec .venv/bin/pytest -q -s tests/deploy/test_docker.py "$@"
