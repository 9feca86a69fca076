#!/usr/bin/env bash
# Builds the binaries of hashpivot's tier-2 test control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl, helm) from Go modules
# and caches them outside the repo. Idempotent: a warm run checks a stamp and exits at once.
#
# Usage: scripts/k8s-testenv.sh [--force]
# Env:   HASHPIVOT_TESTENV_DIR  cache dir (default ~/.cache/hashpivot/k8s-testenv/v<k8s>)
# Needs: Go >= 1.26 on PATH and the Go module proxy. No C compiler, no containers.
# Last line of output: K8S_TESTENV_BIN=<dir holding the binaries>.
set -euo pipefail

K8S_VERSION=1.36.2
KWOK_VERSION=v0.8.0
HELM_VERSION=v4.2.4
GO_MIN_MINOR=26
# Bump when the build recipe changes in a way go.mod/go.sum do not show.
RECIPE_REV=2
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl helm)

START=$SECONDS
log() { printf '[k8s-testenv %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() {
    printf '[k8s-testenv] ERROR: %s\n' "$*" >&2
    exit 1
}

FORCE=0
case "${1:-}" in
"") ;;
--force) FORCE=1 ;;
-h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument: $1 (usage: $0 [--force])" ;;
esac

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODDIR=$REPO_ROOT/tools/k8s-testenv
OUT=${HASHPIVOT_TESTENV_DIR:-$HOME/.cache/hashpivot/k8s-testenv/v$K8S_VERSION}
BIN=$OUT/bin
STAMP=$OUT/.stamp

[[ -f $MODDIR/go.mod && -f $MODDIR/go.sum ]] || die "missing $MODDIR/go.mod or go.sum"

# The stamp key names everything that decides the binaries' content.
# Contents only: the same module files give the same key from any checkout path.
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
KEY="k8s=$K8S_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION rev=$RECIPE_REV"
KEY="$KEY mod=$(hash_of "$MODDIR/go.mod" "$MODDIR/go.sum")"

binaries_present() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x $BIN/$b ]] || return 1
    done
}

up_to_date() {
    [[ $FORCE == 0 && -f $STAMP ]] && [[ "$(head -n1 "$STAMP")" == "$KEY" ]] && binaries_present
}

if up_to_date; then
    log "up to date ($KEY), nothing to build"
    log "done in $((SECONDS - START))s"
    echo "K8S_TESTENV_BIN=$BIN"
    exit 0
fi

command -v go >/dev/null 2>&1 ||
    die "Go is not on PATH. Install Go >= 1.$GO_MIN_MINOR (https://go.dev/doc/install) and rerun."
GO_VER=$(go env GOVERSION)
GO_MINOR=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$GO_VER")
if [[ -z $GO_MINOR || $GO_MINOR -lt $GO_MIN_MINOR ]]; then
    die "Go $GO_VER is too old: the pinned modules need Go >= 1.$GO_MIN_MINOR"
fi

mkdir -p "$OUT"
# One build at a time per cache dir (two test runs may race to build).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT/.lock"
    if ! flock -n 9; then
        log "another build holds $OUT/.lock; waiting for it"
        flock 9
    fi
    # Another run may have finished the build while this one waited.
    if up_to_date; then
        log "built by a concurrent run; done in $((SECONDS - START))s"
        echo "K8S_TESTENV_BIN=$BIN"
        exit 0
    fi
fi

log "building the control plane for Kubernetes v$K8S_VERSION with $GO_VER into $BIN"
log "cold Go caches: about 10 min on 2 idle cores, 30+ min on a busy machine"
df -h "$OUT" "$(go env GOMODCACHE)" 2>/dev/null | sed 's/^/    /' >&2 || true

STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# Flags go on each command line: nothing global, no GOFLAGS from the caller, no go.work.
# CGO off: static binaries, and no C toolchain needed (upstream builds these the same way).
gorun() { env GOFLAGS= GOWORK=off CGO_ENABLED=0 go "$@"; }

step() {
    local name=$1
    shift
    local t=$SECONDS
    log "$name ..."
    "$@" || die "$name failed (see the output above)"
    log "$name took $((SECONDS - t))s"
}

# kwokctl reads each binary's --version to choose its flags, so stamp the real version.
LDF=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDF="$LDF -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
    minor=${K8S_VERSION#*.}
    LDF="$LDF -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
done

build_kube() {
    (cd "$MODDIR" && gorun build -mod=readonly -trimpath -buildvcs=false -ldflags "-s -w $LDF" \
        -o "$STAGE/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl)
}
# etcd's module root is its main package; `go install` of it refuses its replace directives.
build_etcd() {
    (cd "$MODDIR" && gorun build -mod=readonly -trimpath -buildvcs=false -ldflags "-s -w" \
        -o "$STAGE/etcd" go.etcd.io/etcd/server/v3)
}
# Outside any module so `pkg@version` uses those modules' own go.sum-verified graphs.
build_kwok() {
    (cd "$STAGE" && GOBIN=$STAGE gorun install -trimpath -ldflags "-s -w" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION")
}
# Helm v4 takes its default kube version from client-go's module version (1.36 here), so
# `helm template` needs no --kube-version; only its own version string needs stamping.
build_helm() {
    local hv=helm.sh/helm/v4/internal/version
    (cd "$STAGE" && GOBIN=$STAGE gorun install -trimpath \
        -ldflags "-s -w -X $hv.version=$HELM_VERSION -X $hv.metadata= -X $hv.gitTreeState=clean" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
}

download() { (cd "$MODDIR" && gorun mod download); }
step "download modules" download
step "build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl" build_kube
step "build etcd" build_etcd
step "build kwok, kwokctl $KWOK_VERSION" build_kwok
step "build helm $HELM_VERSION" build_helm

# Check that every binary runs (and reports what kwokctl expects) before installing it.
v=$("$STAGE/kube-apiserver" --version 2>&1) || die "kube-apiserver does not run: $v"
[[ $v == "Kubernetes v$K8S_VERSION" ]] || die "kube-apiserver reports '$v', want v$K8S_VERSION"
for b in "${BINARIES[@]}"; do
    [[ -x $STAGE/$b ]] || die "$b was not built"
    case $b in
    kubectl) args=(version --client) ;;
    helm) args=(version --short) ;;
    *) args=(--version) ;;
    esac
    v=$("$STAGE/$b" "${args[@]}" 2>&1) || die "\`$b ${args[*]}\` failed: $v"
    log "  $b: $(head -n1 <<<"$v")"
done

mkdir -p "$BIN"
for b in "${BINARIES[@]}"; do
    mv -f "$STAGE/$b" "$BIN/$b"
done
{
    echo "$KEY"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $GO_VER in $((SECONDS - START))s"
} >"$STAMP"

log "binaries: $(du -sh "$BIN" | cut -f1) in $BIN"
log "Go caches: modules $(du -sh "$(go env GOMODCACHE)" 2>/dev/null | cut -f1)," \
    "build $(du -sh "$(go env GOCACHE)" 2>/dev/null | cut -f1)"
log "done in $((SECONDS - START))s"
echo "K8S_TESTENV_BIN=$BIN"
