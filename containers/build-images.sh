#!/usr/bin/env bash
# Builds the two tapline images from this repository alone: no daemon, no
# registry, no base image. Needs root (setcap on the staged binary), cargo,
# ldd, objcopy, setcap/getcap (libcap2-bin), tar, and Debian's buildah.
#
#   containers/build-images.sh [--skip-cargo] [--stage-only] [--oci-archive DIR]
#
#   --skip-cargo       use target/release/* as they are (CI builds them first)
#   --stage-only       stop after staging containers/build/{dataplane,control}
#                      (rootfs.tar + Containerfile context), for `docker build`
#                      or `podman build` elsewhere
#   --oci-archive DIR  also write DIR/tapline-{dataplane,control}-VERSION.oci.tar,
#                      to load on a node without a registry
#                      (`ctr -n k8s.io images import FILE`, `podman load -i FILE`)
#
# Result: localhost/tapline-dataplane:VERSION and localhost/tapline-control:VERSION
# in the local containers storage (/var/lib/containers/storage, shared with
# podman), and one line per image with its size on stdout.
#
# What goes into each image (FROM scratch): the release binary with its
# debug sections removed (symbols kept for readable panics), the shared
# libraries `ldd` lists for it and the dynamic loader, the example
# configuration, a two-line nsswitch.conf (for taplinectl --endpoint with a
# DNS name) and, for the dataplane, the state_dir owned by 65532 and the file
# capabilities cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock=ep. Checked
# after the build: the capabilities are read back from the committed image.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

skip_cargo=0
stage_only=0
archive_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-cargo) skip_cargo=1 ;;
        --stage-only) stage_only=1 ;;
        --oci-archive) archive_dir=${2:?--oci-archive needs a directory}; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "build-images.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "build-images.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (setcap on the staged binary needs CAP_SETFCAP)"
for tool in ldd objcopy setcap getcap tar; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: libc-bin, binutils, libcap2-bin, tar)"
done
[ "$stage_only" = 1 ] || command -v buildah >/dev/null || die "buildah not found (Debian: apt-get install buildah)"

# OCI labels: version and source from Cargo.toml, revision and date from git
# (the commit date, so a rebuild of the same commit gets the same labels).
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
source_url=$(sed -n '/^\[workspace.package\]/,/^\[/s/^repository = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"
if git -C "$repo" rev-parse HEAD >/dev/null 2>&1; then
    revision=$(git -C "$repo" rev-parse HEAD)
    git -C "$repo" diff --quiet HEAD -- . 2>/dev/null || revision="$revision-dirty"
    created=$(git -C "$repo" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)
    epoch=$(git -C "$repo" log -1 --format=%ct)
else
    revision=unknown
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    epoch=$(date +%s)
fi

if [ "$skip_cargo" = 0 ]; then
    cargo build --release --locked -p tapline-dataplane -p tapline-control
fi
target=${CARGO_TARGET_DIR:-$repo/target}/release
for bin in tapline-dataplane tapline-control taplinectl; do
    [ -x "$target/$bin" ] || die "$target/$bin missing (run without --skip-cargo)"
done

build="$repo/containers/build"

# stage NAME BIN... : a root file system with the binaries in /usr/local/bin
# and every library they load, then rootfs.tar (xattrs kept) in
# containers/build/NAME.
stage() {
    local name=$1; shift
    local ctx="$build/$name" root="$build/$name/root"
    rm -rf "$ctx"
    mkdir -p "$root/usr/local/bin" "$root/etc/tapline"
    local bin lib
    for bin in "$@"; do
        objcopy --strip-debug "$target/$bin" "$root/usr/local/bin/$bin"
        chmod 0755 "$root/usr/local/bin/$bin"
        if ldd "$target/$bin" | grep -q 'not found'; then
            die "$bin: a shared library is missing: $(ldd "$target/$bin" | grep 'not found')"
        fi
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the
        # loader "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
        for lib in $(ldd "$target/$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
    cp containers/tapline.toml "$root/etc/tapline/tapline.toml"
    printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
    chmod 0644 "$root/etc/tapline/tapline.toml" "$root/etc/nsswitch.conf"
    chown -R 0:0 "$root"
    cp "containers/Containerfile.$name" "$ctx/Containerfile"
}

stage dataplane tapline-dataplane
mkdir -p "$build/dataplane/root/run/tapline"
chown 65532:65532 "$build/dataplane/root/run/tapline"
setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock=ep "$build/dataplane/root/usr/local/bin/tapline-dataplane"
stage control tapline-control taplinectl

for name in dataplane control; do
    tar --xattrs --xattrs-include=security.capability --numeric-owner --sort=name \
        --mtime="@$epoch" -C "$build/$name/root" -cf "$build/$name/rootfs.tar" .
    rm -rf "$build/$name/root"
done
tar --xattrs -tvvf "$build/dataplane/rootfs.tar" ./usr/local/bin/tapline-dataplane >/dev/null
if [ "$stage_only" = 1 ]; then
    echo "staged: $build/dataplane and $build/control (Containerfile + rootfs.tar)"
    exit 0
fi

for name in dataplane control; do
    image="localhost/tapline-$name:$version"
    # A rebuild moves the tag; the image it leaves untagged is removed so
    # repeated builds (CI re-runs, development) do not pile up in the
    # storage (kept if a container still uses it).
    old_id=$(buildah images --quiet --no-trunc "$image" 2>/dev/null | head -1 || true)
    buildah bud --quiet --format oci --layers=false --pull=never \
        --timestamp "$epoch" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        --build-arg SOURCE="$source_url" --build-arg CREATED="$created" \
        -f "$build/$name/Containerfile" -t "$image" "$build/$name" >/dev/null
    new_id=$(buildah images --quiet --no-trunc "$image" | head -1)
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        buildah rmi "$old_id" >/dev/null 2>&1 || true
    fi
done

# The file capabilities must have survived into the committed image.
ctr=$(buildah from --pull-never "localhost/tapline-dataplane:$version")
mnt=$(buildah mount "$ctr")
caps=$(getcap "$mnt/usr/local/bin/tapline-dataplane" | awk '{print $2}')
buildah umount "$ctr" >/dev/null
buildah rm "$ctr" >/dev/null
[ "$caps" = "cap_net_admin,cap_net_raw,cap_ipc_lock,cap_bpf=ep" ] \
    || die "tapline-dataplane image: file capabilities lost (getcap says '${caps:-none}')"

for name in dataplane control; do
    image="localhost/tapline-$name:$version"
    if [ -n "$archive_dir" ]; then
        mkdir -p "$archive_dir"
        rm -f "$archive_dir/tapline-$name-$version.oci.tar"
        buildah push --quiet "$image" "oci-archive:$archive_dir/tapline-$name-$version.oci.tar:tapline-$name:$version"
    fi
    size=$(buildah inspect --type image --format '{{.ImageSize}}' "$image" 2>/dev/null || true)
    if [ -z "$size" ] || [ "$size" = "<no value>" ]; then
        size=$(stat -c %s "$build/$name/rootfs.tar")
    fi
    printf 'image %s size_bytes=%s (%s MiB) revision=%s\n' "$image" "$size" \
        "$(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1048576}')" "$revision"
done
