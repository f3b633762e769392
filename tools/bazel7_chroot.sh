#!/usr/bin/env bash
# Checks the workspace with Bazel 7.7.1 as the Nix shell runs it, on a machine without Nix:
# in a Debian sid chroot, with no bazel-* rule packages and no network.
#
#   sudo tools/bazel7_chroot.sh [FOLDER]     # FOLDER defaults to /var/tmp/reproseg-sid
#
# It builds the targets that need no TensorFlow (not those that compile against its headers)
# and runs the test targets that need none (the chroot has
# Debian's Python, not the lock's wheels), with the Nix shell's rc files and variables:
# the workspace's .bazelrc plus --bazelrc=tools/bazel/bazel7.bazelrc, BAZEL_PYTHON,
# REPROSEG_TOOLCHAIN=nix, IN_NIX_SHELL. Too heavy for CI: the chroot is about 2.5 GB and its
# first set-up takes about 10 minutes; later runs reuse it and take about a minute.
#
# Needs root, debootstrap, unshare and ip (util-linux, iproute2) and a Debian package mirror
# ($DEBIAN_MIRROR, else the first one in this machine's apt sources).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${1:-/var/tmp/reproseg-sid}
say() { echo "bazel7_chroot: $*" >&2; }
die() { echo "bazel7_chroot: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap unshare ip; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap util-linux iproute2"
done

# The test targets whose code imports no TensorFlow.
TESTS=(//tests:archive_test //tests:arrays_test //tests:download_test //tests:import_boundaries_test
       //tests:inventory_test //tests:result_file_test
       //tests:petset_test //tests:store_test //tests:synthetic_test)
# Debian splits these out of Bazel's own install base (where upstream and nixpkgs' bazel_7
# carry them: rules_java_builtin, and @platforms / internal_platforms_do_not_use). Their
# folders are put back as part of Bazel; the packages themselves stay uninstalled.
BAZEL_OWN=(bazel-rules-java:usr/share/bazel/rules/java bazel-platforms:usr/share/bazel/tools/platforms)
RULE_PACKAGES=(bazel-features bazel-platforms bazel-rules-cc bazel-rules-java bazel-rules-license
               bazel-rules-proto bazel-rules-python bazel-skylib)

# Java (Debian's JDK set-up, and Bazel) needs /proc in the chroot.
mount_proc() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  trap 'umount "$root/proc"' EXIT
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
apt_get() { in_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false "$@"; }

# --- The chroot, made once ----------------------------------------------------------------
if [ ! -f "$root/.reproseg-ready" ]; then
  mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
      grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)}
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*: set DEBIAN_MIRROR"
  say "debootstrap sid into $root from $mirror (about 5 minutes)"
  ! mountpoint -q "$root/proc" || umount "$root/proc"  # left by an interrupted run
  rm -rf "$root"
  debootstrap --variant=minbase sid "$root" "$mirror" >&2
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount_proc
  say "installing Bazel 7 and Python in the chroot"
  # A mirror's sid may carry a Release file some days past its Valid-Until.
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends bazel-bootstrap python3 python3-absl \
      python3-numpy python3-pil >&2
  say "removing every bazel-* rule package: ${RULE_PACKAGES[*]}"
  in_root dpkg --remove --force-depends "${RULE_PACKAGES[@]}" >&2
  for entry in "${BAZEL_OWN[@]}"; do
    package=${entry%%:*} folder=${entry#*:}
    deb=$(ls "$root"/var/cache/apt/archives/"${package}"_*.deb)
    scratch=$(mktemp -d)
    dpkg-deb -x "$deb" "$scratch"
    mkdir -p "$(dirname "$root/$folder")"
    cp -a "$scratch/$folder" "$root/$folder"
    rm -rf "$scratch"
  done
  # Debian's system rc also points Bzlmod at the rule packages: keep only its install base.
  printf 'startup --install_base=/usr/share/bazel\nstartup --trust_install_base\n' \
      > "$root/etc/bazel/bazelrc"
  touch "$root/.reproseg-ready"
fi
mount_proc
installed=$(in_root dpkg-query -W -f '${db:Status-Abbrev}${Package}\n' 'bazel-*' |
    awk '$1 == "ii" && $2 !~ /^bazel-bootstrap/ { print $2 }')
[ -z "$installed" ] || die "rule packages are installed in $root:" $installed

# --- The workspace's committed files, checked offline ------------------------------------
say "copying the repository's files into $root/src"
rm -rf "$root/src"
mkdir -p "$root/src"
git -C "$here" ls-files -z | (cd "$here" && tar --null -cf - -T -) | tar -xf - -C "$root/src"

run_offline() {
  # A new network namespace has only a loopback (Bazel's client talks to its server on it).
  unshare --net bash -c 'ip link set lo up && exec "$@"' - chroot "$root" env -i \
      PATH=/usr/bin:/bin HOME=/tmp/home BAZEL_PYTHON=/usr/bin/python3 REPROSEG_TOOLCHAIN=nix \
      IN_NIX_SHELL=impure bash -c 'mkdir -p "$HOME" && cd /src && "$@"' - "$@"
}
bazel7=(bazel --bazelrc=/src/tools/bazel/bazel7.bazelrc)
# What links the fixed-order kernels (//kernels, every stage binary, most tests) compiles against
# TensorFlow's headers, which @tensorflow_headers finds by importing TensorFlow: not here.
NO_TENSORFLOW=(//pipeline/... //data_tools/... //tools/... //seg:seg //kernels:sources)
say "$(run_offline bazel --version), offline, no rule packages: build ${NO_TENSORFLOW[*]}"
run_offline "${bazel7[@]}" build "${NO_TENSORFLOW[@]}"
say "test ${TESTS[*]}"
run_offline "${bazel7[@]}" test "${TESTS[@]}"
run_offline "${bazel7[@]}" shutdown
say "passed: Bazel 7 builds what needs no TensorFlow and passes the tests above with what the repository provides"
