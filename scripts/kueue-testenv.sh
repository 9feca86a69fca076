#!/usr/bin/env bash
# Builds Kueue and the KubeRay operator for hashpivot's tier-2 tests from Go modules, and
# copies the manifests they need (CRDs, Kueue's webhook configuration) beside them, outside
# the repo. Idempotent: a warm run checks a stamp and exits at once.
#
# Usage: scripts/kueue-testenv.sh [--force]
# Env:   HASHPIVOT_KUEUE_TESTENV_DIR  cache dir (default ~/.cache/hashpivot/kueue-testenv/<versions>)
# Needs: Go >= 1.26 on PATH and the Go module proxy. No C compiler, no containers.
# Last line of output: KUEUE_TESTENV_DIR=<dir holding bin/ and manifests/>.
set -euo pipefail

KUEUE_VERSION=v0.17.0
# The KubeRay version Kueue v0.17.0 itself requires (its go.mod).
KUBERAY_VERSION=v1.6.0
GO_MIN_MINOR=26
# Bump when the build recipe changes.
RECIPE_REV=2
BINARIES=(kueue ray-operator)

START=$SECONDS
log() { printf '[kueue-testenv %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() {
    printf '[kueue-testenv] ERROR: %s\n' "$*" >&2
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

OUT=${HASHPIVOT_KUEUE_TESTENV_DIR:-$HOME/.cache/hashpivot/kueue-testenv/kueue-$KUEUE_VERSION-kuberay-$KUBERAY_VERSION}
BIN=$OUT/bin
MAN=$OUT/manifests
STAMP=$OUT/.stamp
KEY="kueue=$KUEUE_VERSION kuberay=$KUBERAY_VERSION rev=$RECIPE_REV"

present() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x $BIN/$b ]] || return 1
    done
    [[ -d $MAN/kueue/crd && -f $MAN/kueue/webhook/manifests.yaml && -f $MAN/ray/crd/ray.io_rayservices.yaml ]]
}

up_to_date() {
    [[ $FORCE == 0 && -f $STAMP ]] && [[ "$(head -n1 "$STAMP")" == "$KEY" ]] && present
}

if up_to_date; then
    log "up to date ($KEY), nothing to build"
    echo "KUEUE_TESTENV_DIR=$OUT"
    exit 0
fi

command -v go >/dev/null 2>&1 ||
    die "Go is not on PATH. Install Go >= 1.$GO_MIN_MINOR (https://go.dev/doc/install) and rerun."
GO_VER=$(go env GOVERSION)
GO_MINOR=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$GO_VER")
if [[ -z $GO_MINOR || $GO_MINOR -lt $GO_MIN_MINOR ]]; then
    die "Go $GO_VER is too old: Kueue $KUEUE_VERSION needs Go >= 1.25, this recipe 1.$GO_MIN_MINOR"
fi

mkdir -p "$OUT"
# One build at a time per cache dir (two test runs may race to build).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT/.lock"
    if ! flock -n 9; then
        log "another build holds $OUT/.lock; waiting for it"
        flock 9
    fi
    if up_to_date; then
        log "built by a concurrent run"
        echo "KUEUE_TESTENV_DIR=$OUT"
        exit 0
    fi
fi

log "building Kueue $KUEUE_VERSION and KubeRay $KUBERAY_VERSION with $GO_VER into $BIN"
log "cold Go caches: about 8 min on a busy 2-core machine; warm: seconds"

STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# Nothing global from the caller: no GOFLAGS, no go.work; static binaries without cgo.
gorun() { env GOFLAGS= GOWORK=off CGO_ENABLED=0 go "$@"; }

step() {
    local name=$1
    shift
    local t=$SECONDS
    log "$name ..."
    "$@" || die "$name failed (see the output above)"
    log "$name took $((SECONDS - t))s"
}

# Outside any module: `pkg@version` builds from that module's own go.sum-verified graph.
build_kueue() {
    (cd "$STAGE" && GOBIN=$STAGE gorun install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
        "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION")
}
build_kuberay() {
    (cd "$STAGE" && GOBIN=$STAGE gorun install -trimpath -ldflags "-s -w" \
        "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")
}
module_dir() {
    (cd "$STAGE" && gorun mod download -json "$1@$2") | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p'
}
copy_manifests() {
    local kdir rdir
    kdir=$(module_dir sigs.k8s.io/kueue "$KUEUE_VERSION")
    rdir=$(module_dir github.com/ray-project/kuberay/ray-operator "$KUBERAY_VERSION")
    [[ -d $kdir && -d $rdir ]] || return 1
    mkdir -p "$STAGE/manifests/kueue/crd" "$STAGE/manifests/kueue/webhook" "$STAGE/manifests/ray/crd"
    cp "$kdir"/config/components/crd/bases/*.yaml "$STAGE/manifests/kueue/crd/"
    cp "$kdir/config/components/crd/kustomization.yaml" "$STAGE/manifests/kueue/"
    cp "$kdir/config/components/webhook/manifests.yaml" "$STAGE/manifests/kueue/webhook/"
    # The operator watches all three kinds: without one of the CRDs it does not start.
    cp "$rdir"/config/crd/bases/ray.io_{rayclusters,rayjobs,rayservices}.yaml "$STAGE/manifests/ray/crd/"
    chmod -R u+w "$STAGE/manifests"
}

step "build kueue $KUEUE_VERSION" build_kueue
step "build ray-operator $KUBERAY_VERSION" build_kuberay
step "copy CRDs and webhook manifests" copy_manifests


mkdir -p "$BIN"
for b in "${BINARIES[@]}"; do
    [[ -x $STAGE/$b ]] || die "$b was not built"
    mv -f "$STAGE/$b" "$BIN/$b"
done
rm -rf "$MAN"
mv "$STAGE/manifests" "$MAN"
{
    echo "$KEY"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $GO_VER in $((SECONDS - START))s"
} >"$STAMP"

log "done in $((SECONDS - START))s"
echo "KUEUE_TESTENV_DIR=$OUT"
