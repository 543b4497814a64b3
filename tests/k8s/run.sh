#!/usr/bin/env bash
# The Kubernetes deployment checks, as CI runs them (from .ci/run, as root,
# after the system packages are installed):
#   1. a venv with the Python tools (kubernetes-validate, checkov, PyYAML,
#      grpcio-health-checking), reused when it is already there;
#   2. tests/k8s/validate.py: render, validate, lint the manifests;
#   3. containers/build-images.sh: the two images from the release binaries;
#   4. tests/k8s/node_sim.py: the node simulation with those images.
# Each step prints its duration; any failure stops the script non-zero.
#
#   tests/k8s/run.sh [--skip-cargo]   (--skip-cargo: target/release is built)
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${TAPLINE_K8S_VENV:-/var/tmp/tapline-k8s-venv}
step() { echo "== k8s: $1 ($(date -u +%T))"; }
t0=$(date +%s)

step "python tools in $venv"
# Reused only when a previous install of exactly these requirements
# completed (the stamp is written last) and its interpreter still runs: an
# interrupted install or a changed list installs again, into the same venv.
reqs=('kubernetes-validate>=1.37,<2' 'checkov>=3.2,<4' 'grpcio-health-checking>=1.60' 'PyYAML>=6')
stamp="$venv/.tapline-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${reqs[*]}" ] || ! "$venv/bin/python" -c 'import checkov, kubernetes_validate, grpc_health, yaml' 2>/dev/null; then
    py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    rm -f "$stamp"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${reqs[@]}"
    printf '%s' "${reqs[*]}" > "$stamp"
else
    echo "== k8s: reusing $venv"
fi
t1=$(date +%s)

step "validate manifests"
"$venv/bin/python" tests/k8s/validate.py
t2=$(date +%s)

if [ "$(id -u)" != 0 ]; then
    if [ "${TAPLINE_SKIP_PRIVILEGED:-}" = 1 ]; then
        echo "== k8s: images and node simulation skipped (TAPLINE_SKIP_PRIVILEGED=1)"
        exit 0
    fi
    echo "tests/k8s/run.sh: the images and the node simulation need root (setcap, buildah," \
         "network namespaces, podman); set TAPLINE_SKIP_PRIVILEGED=1 to skip them explicitly" >&2
    exit 1
fi

step "build images"
containers/build-images.sh "$@"
t3=$(date +%s)

step "node simulation"
"$venv/bin/python" tests/k8s/node_sim.py
t4=$(date +%s)

echo "== k8s: done: venv $((t1 - t0)) s, validate $((t2 - t1)) s, images $((t3 - t2)) s, node simulation $((t4 - t3)) s"
