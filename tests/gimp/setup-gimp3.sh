#!/usr/bin/env bash
# Make real GIMP 3 available to the plug-in's end-to-end tests, or say why it cannot be.
# On Debian 13 and later GIMP 3 is a package: install it on this machine. On Debian 12 it is
# not: build (once) a Debian 13 root with debootstrap and install GIMP there; tests run it with
# chroot, and loopback is shared, so the plug-in inside reaches a daemon outside.
# Prints the root GIMP runs in ("/" for this machine) as its last line. Needs root and the
# Debian mirror this machine's apt already uses. Safe to run again: a finished root is reused.
set -euo pipefail

ROOT=${NEURAL_STYLE_GIMP3_ROOT:-/var/cache/neural-style-tests/gimp3-trixie}
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 python3-zmq python3-numpy xvfb xauth xdotool imagemagick"
READY="$ROOT/.neural-style-ready"

fail() { echo "cannot set up GIMP 3: $*" >&2; exit 1; }
apt_install() {  # on this machine; refresh the package lists only if the first try fails
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null
    }
}

[ "$(id -u)" = 0 ] || fail "this needs root (apt-get, debootstrap, chroot)"
command -v apt-get >/dev/null || fail "not a Debian-like system (no apt-get)"

major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)
if [ "${major}" -ge 13 ] 2>/dev/null; then
    if ! command -v gimp-console-3.0 >/dev/null || ! command -v Xvfb >/dev/null; then
        apt_install $PACKAGES || fail "apt-get install $PACKAGES failed"
    fi
    echo /
    exit 0
fi

mirror() {
    # The mirror this machine already uses: no other host is reachable on these machines.
    local uri
    uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
              /etc/apt/sources.list.d/ 2>/dev/null | head -1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

mount_into_root() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev" || mount --rbind /dev "$ROOT/dev"
    cp /etc/resolv.conf /etc/hosts "$ROOT/etc/" 2>/dev/null || true
}

if [ -f "$READY" ] && [ "$(cat "$READY")" = "$PACKAGES" ]; then
    mount_into_root
    echo "$ROOT"
    exit 0
fi

command -v debootstrap >/dev/null || apt_install debootstrap || fail "cannot install debootstrap"

MIRROR=$(mirror)
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    # A half-made root from an interrupted run: unmount before removing (a bound /dev inside
    # would otherwise be walked).
    if [ -d "$ROOT" ]; then
        umount -R "$ROOT/proc" "$ROOT/dev" 2>/dev/null || true
        # A folder of this machine bound inside (tests share the repository that way) would be
        # deleted with it: refuse while anything is still mounted there.
        if grep -q " $ROOT/" /proc/mounts; then
            fail "something is still mounted under $ROOT (see /proc/mounts): unmount it first"
        fi
        rm -rf --one-file-system "$ROOT"
    fi
    mkdir -p "$(dirname "$ROOT")"
    echo "building a Debian 13 root for GIMP 3 in $ROOT from $MIRROR (about a minute)" >&2
    debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >/dev/null \
        || fail "debootstrap trixie from $MIRROR failed"
fi
cat > "$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb ${MIRROR%/debian*}/debian-security trixie-security main
SOURCES
mount_into_root
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
                DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -q >/dev/null || fail "apt-get update inside $ROOT failed"
in_root apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null \
    || fail "installing $PACKAGES inside $ROOT failed"
echo "$PACKAGES" > "$READY"
echo "$ROOT"
