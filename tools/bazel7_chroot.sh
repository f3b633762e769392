#!/usr/bin/env bash
# Checks the workspace with Bazel 7.7.1 (.bazelversion) as the Nix shell runs it, on a machine
# without Nix: in a Debian sid root, with no bazel-* rule packages and no network, so every
# module comes from MODULE.bazel's stand-ins.
#
#   sudo tools/bazel7_chroot.sh [FOLDER]                   # FOLDER: /var/tmp/reproseg-sid
#   sudo tools/bazel7_chroot.sh --suite=PYTHON [FOLDER]
#
# Without --suite it builds the targets that need no TensorFlow (not those that compile against
# its headers) and runs the test targets that need none, on Debian sid's Python. With --suite,
# PYTHON is the interpreter of an environment made from requirements.lock (./dev's: `./dev
# python -c 'import sys; print(sys.executable)'`): its folders are bound into the root at the
# same paths, and `bazel test //...` runs the whole suite on it, the kernels compiled by sid's
# g++ and emulated CPUs run by sid's qemu-user (about 40 minutes on 2 cores).
# The root is entered with pivot_root in a new mount and network namespace, not chroot, so that
# the tests that make user namespaces (bad_input_test) and Bazel's linux-sandbox work in it.
# Variables as in the Nix shell: BAZEL_PYTHON, REPROSEG_TOOLCHAIN=nix, IN_NIX_SHELL. Too heavy
# for CI: the root is about 2.5 GB and its first set-up takes about 10 minutes.
#
# Needs root, debootstrap, unshare and ip (util-linux, iproute2) and a Debian package mirror
# ($DEBIAN_MIRROR, else the first one in this machine's apt sources).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "bazel7_chroot: $*" >&2; }
die() { echo "bazel7_chroot: error: $*" >&2; exit 1; }

suite_python=""
case "${1:-}" in
  --suite=*) suite_python=${1#--suite=}; shift ;;
  -*) die "unknown option $1: use --suite=PYTHON or none" ;;
esac
root=${1:-/var/tmp/reproseg-sid}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, mounts and pivot_root need it)"
for tool in debootstrap unshare ip; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap util-linux iproute2"
done

# The test targets whose code imports no TensorFlow.
TESTS=(//tests:archive_test //tests:arrays_test //tests:download_test //tests:import_boundaries_test
       //tests:inventory_test //tests:result_file_test
       //tests:petset_test //tests:store_test //tests:synthetic_test)
# What links the fixed-order kernels (//kernels, every stage binary, most tests) compiles against
# TensorFlow's headers, which @tensorflow_headers finds by importing TensorFlow.
NO_TENSORFLOW=(//pipeline/... //data_tools/... //tools/... //seg:seg //kernels:sources)
# What the root holds: Bazel 7 and g++, Python for the tests above, qemu-user and Nix for the
# suite's cross-CPU and flake tests. A root made with another list is made again.
PACKAGES=(bazel-bootstrap g++ python3 python3-absl python3-numpy python3-pil qemu-user nix-bin)
# Debian splits these out of Bazel's own install base (where upstream and nixpkgs' bazel_7
# carry them: rules_java_builtin, and @platforms / internal_platforms_do_not_use). Their
# folders are put back as part of Bazel; the packages themselves stay uninstalled.
BAZEL_OWN=(bazel-rules-java:usr/share/bazel/rules/java bazel-platforms:usr/share/bazel/tools/platforms)
RULE_PACKAGES=(bazel-features bazel-platforms bazel-rules-cc bazel-rules-java bazel-rules-license
               bazel-rules-proto bazel-rules-python bazel-skylib)

# Java (Debian's JDK set-up, and Bazel) needs /proc in the root while it is made.
mount_proc() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  trap 'umount "$root/proc"' EXIT
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
apt_get() { in_root env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false "$@"; }

# --- The root, made once -----------------------------------------------------------------
ready="$root/.reproseg-ready"
if [ "$(cat "$ready" 2>/dev/null)" != "${PACKAGES[*]}" ]; then
  mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
      grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)}
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*: set DEBIAN_MIRROR"
  say "debootstrap sid into $root from $mirror (about 5 minutes)"
  ! mountpoint -q "$root/proc" || umount "$root/proc"  # left by an interrupted run
  rm -rf "$root"
  debootstrap --variant=minbase sid "$root" "$mirror" >&2
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount_proc
  say "installing ${PACKAGES[*]}"
  # A mirror's sid may carry a Release file some days past its Valid-Until.
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
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
  umount "$root/proc" && trap - EXIT
  echo "${PACKAGES[*]}" > "$ready"
fi
# Nix as a single-user install: root builds, with no build users (sid's nix-bin makes none).
mkdir -p "$root/etc/nix"
printf 'build-users-group =\n' > "$root/etc/nix/nix.conf"
installed=$(in_root dpkg-query -W -f '${db:Status-Abbrev}${Package}\n' 'bazel-*' |
    awk '$1 == "ii" && $2 !~ /^bazel-bootstrap/ { print $2 }')
[ -z "$installed" ] || die "rule packages are installed in $root:" $installed

# --- The workspace's committed files, checked offline ------------------------------------
say "copying the repository's files into $root/src"
rm -rf "$root/src"
mkdir -p "$root/src"
git -C "$here" ls-files -z | (cd "$here" && tar --null -cf - -T -) | tar -xf - -C "$root/src"

# Paths bound into the root at the same place: the suite's Python environment.
binds=()
python=/usr/bin/python3
if [ -n "$suite_python" ]; then
  [ -x "$suite_python" ] || die "--suite=$suite_python is not an interpreter"
  read -r prefix base version < <("$suite_python" -c \
      'import sys; print(sys.prefix, sys.base_prefix, "python%d.%d" % sys.version_info[:2])')
  "$suite_python" -c 'import tensorflow' 2>/dev/null ||
      die "--suite=$suite_python cannot import tensorflow: give the interpreter of ./dev's environment"
  binds+=("$prefix")
  if [ "$base" = /usr ]; then  # a Debian interpreter: only its own files, never sid's /usr
    binds+=("/usr/bin/$version" "/usr/lib/$version")
  elif [ "$base" != "$prefix" ]; then
    binds+=("$base")
  fi
  python=$prefix/bin/python3
fi

# Runs a shell command in the root, offline: a new network namespace with only a loopback
# (Bazel's client talks to its server on it), and a new mount namespace whose / is the root by
# pivot_root; a chroot would forbid the user namespaces that tests and linux-sandbox make.
run_in_root() {
  unshare --net --mount --propagation private bash -c '
    set -e
    root=$1 python=$2 command=$3
    shift 3
    ip link set lo up
    mount --bind "$root" "$root"
    for path in "$@"; do
      if [ -d "$path" ]; then mkdir -p "$root$path"; else mkdir -p "$(dirname "$root$path")" && touch "$root$path"; fi
      mount --bind "$path" "$root$path"
    done
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"  # pseudo-terminals and shared memory (Nix, multiprocessing)
    cd "$root"
    mkdir -p .old_root
    pivot_root . .old_root
    cd /
    umount -l /.old_root
    exec env -i PATH=/usr/bin:/bin HOME=/tmp/home BAZEL_PYTHON="$python" \
        REPROSEG_TOOLCHAIN=nix IN_NIX_SHELL=impure \
        bash -c "mkdir -p \"\$HOME\" && cd /src && $command"
  ' - "$root" "$python" "$1" "${binds[@]}"
}

version=$(run_in_root 'bazel --version')
if [ -n "$suite_python" ]; then
  say "$version, offline, no rule packages, on $suite_python: bazel test //..."
  run_in_root 'status=0; bazel test //... || status=$?; bazel shutdown; exit $status'
  say "passed: Bazel 7 runs the whole suite with what the repository provides"
else
  say "$version, offline, no rule packages: build ${NO_TENSORFLOW[*]}; test ${TESTS[*]}"
  run_in_root "status=0; bazel build ${NO_TENSORFLOW[*]} && bazel test ${TESTS[*]} || status=\$?
               bazel shutdown; exit \$status"
  say "passed: Bazel 7 builds what needs no TensorFlow and passes the tests above with what the repository provides"
fi
