#!/usr/bin/env bash
# Makes (once) the Debian base used by tests/deb_package.rs to install the .deb for real: a
# bookworm tarball from Debian's archive by mmdebstrap, with the package's hard dependencies
# already in (qemu-utils, systemd) so the test installs offline with a bare `dpkg -i`.
#
#   scripts/deb_chroot.sh TARBALL     # prints TARBALL once it exists
#
# The tarball is cached outside the clone (the test passes a path under /var/tmp); a lock
# keeps two runs from building it at once. Change VERSION below when the contents change.
set -euo pipefail
out=${1:?usage: deb_chroot.sh TARBALL}
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if [ ! -s "$out" ]; then
    command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
    tmp="$out.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    mmdebstrap --quiet --variant=apt --format=tar \
        --include=qemu-utils,systemd,ca-certificates \
        bookworm "$tmp" http://deb.debian.org/debian >&2
    mv "$tmp" "$out"
fi
echo "$out"
