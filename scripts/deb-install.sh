#!/usr/bin/env bash
# Installs the built .deb for real, with dpkg and debconf, into a throwaway
# copy of this machine (an overlay over / in a private mount namespace, so
# nothing outside /tmp/consentry-deb-install changes), and checks the
# Security Network question (docs/consent.md, "The installer's question"):
#
#   1. a non-interactive first install without the EULA: not asked, says
#      why, accepts nothing, installs;
#   2. the EULA accepted by the product's installer, then
#      `dpkg-reconfigure consentry` answered yes (teletype frontend):
#      granted, method installer, declared;
#   3. a reinstall over it (dpkg's upgrade path): asks and records nothing;
#   4. revoke, purge, and a first install answered no: a declined receipt.
#
# Needs root, unshare(1), overlayfs and the package:
#   packaging/build-deb.sh && sudo scripts/deb-install.sh [path/to.deb]
# Not run by CI (the release build takes minutes); tests/it/packaging.rs
# runs the same maintainer scripts under debconf on every `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
debs=(target/debian/consentry_*.deb)
deb=${1:-${debs[-1]}}
[ -f "$deb" ] || { echo "no .deb: run packaging/build-deb.sh first" >&2; exit 1; }
work=/tmp/consentry-deb-install
rm -rf "$work"
mkdir -p "$work/up" "$work/work" "$work/root"
cp "$deb" "$work/consentry.deb"

# Everything below runs in a private mount namespace: the overlay and the
# chroot vanish with it; the writes land in $work/up.
unshare -m bash -s "$work" <<'OUTER'
set -euo pipefail
work=$1
root=$work/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/up,workdir=$work/work" "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mkdir -p "$root/install"
mount --bind "$work" "$root/install"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root bash -s <<'IN'
set -euo pipefail
fail() { echo "FAILED: $*" >&2; exit 1; }
said=/install/said.txt

echo "== 1. non-interactive first install, no EULA"
DEBIAN_FRONTEND=noninteractive dpkg -i /install/consentry.deb >"$said" 2>&1 ||
    { cat "$said"; fail "the install failed"; }
grep -q "Security Network question was not asked" "$said" || { cat "$said"; fail "no word about the question"; }
[ ! -e /etc/consentry/consent.toml ] || fail "the install accepted something"
[ ! -e /etc/consentry/.consent.toml.lock ] || fail "asking left a lock file"

echo "== 2. the EULA by the product's installer; dpkg-reconfigure answered yes"
consentry consent grant eula --method installer >/dev/null
echo yes | DEBIAN_FRONTEND=teletype dpkg-reconfigure consentry >"$said" 2>&1 ||
    { cat "$said"; fail "dpkg-reconfigure failed"; }
grep -q "accepted ksn version" "$said" || { cat "$said"; fail "ksn not granted"; }
consentry consent list | grep -E '^ksn .*accepted .*installer$' >/dev/null ||
    fail "ksn is not accepted by the installer"
consentry consent history --json | grep -q '"collection_method": "installer"' ||
    fail "no installer receipt"

echo "== 3. a reinstall asks and records nothing"
before=$(consentry consent history | wc -l)
echo yes | DEBIAN_FRONTEND=teletype dpkg -i /install/consentry.deb >"$said" 2>&1 ||
    { cat "$said"; fail "the reinstall failed"; }
! grep -q "Participate in the Security Network" "$said" || fail "an upgrade asked"
[ "$(consentry consent history | wc -l)" = "$before" ] || fail "an upgrade recorded something"

echo "== 4. revoke, purge, a first install answered no"
consentry consent revoke ksn >/dev/null
dpkg --purge consentry >/dev/null 2>&1
echo no | DEBIAN_FRONTEND=teletype dpkg -i /install/consentry.deb >"$said" 2>&1 ||
    { cat "$said"; fail "the install failed"; }
grep -q "declined ksn" "$said" || { cat "$said"; fail "the no was not recorded"; }
consentry consent history | grep -E 'decline +ksn v[0-9]+ +not accepted -> not accepted +\(installer' >/dev/null ||
    fail "no declined receipt"
consentry consent list | grep -E '^ksn .*not accepted' >/dev/null || fail "ksn accepted by a no"
echo "deb-install: all passed"
IN
OUTER
