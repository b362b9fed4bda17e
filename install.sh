#!/bin/bash
# badge-gateway: install, upgrade or remove the box's daemon, in one command.
#
# ## Install
# On Debian 12 or Raspberry Pi OS bookworm (amd64, arm64, armhf), as root, from a checkout
# or a tarball of this repository:
#
#   sudo ./install.sh                   install; on a box already installed, upgrade to this
#                                       tree (a re-run of the same tree changes nothing)
#   sudo ./install.sh --upgrade         the same, but refuse a box where it is not installed
#   sudo ./install.sh --wheels DIR      offline: Python packages only from the wheelhouse DIR,
#                                       which `./dev wheels DIR` builds on a machine of the
#                                       same architecture (no compiler needed then)
#   sudo ./install.sh --onss-key FILE   also put the ONSS technical user's private key in
#                                       place as the unit's credential (0600 root)
#   sudo ./install.sh --uninstall       stop and remove the program; keep /etc/badge-gateway
#                                       and /var/lib/badge-gateway (the journal)
#   sudo ./install.sh --purge           remove those too, and the badge-gateway user
#   ./install.sh --release-id           print the release this tree makes (compare it with
#                                       `readlink /opt/badge-gateway/venv` on a box)
#
# Where things go (docs/deployment.md says more):
#   /opt/badge-gateway/releases/ID    one virtual environment per release; ID is the version
#                                     and a hash of the source tree
#   /opt/badge-gateway/venv           symlink to the current release (the unit runs
#                                     venv/bin/badge-gateway); previous: the one before
#   /usr/local/bin/badge-gateway      the command, on the PATH
#   /usr/local/lib/systemd/system/    badge-gateway.service, and its onss-credentials.conf
#                                     drop-in when the ONSS key is in place
#   /usr/local/lib/udev/rules.d/, /usr/local/lib/modprobe.d/   USB NFC readers
#   /etc/badge-gateway/               gateway.toml, badges.csv (created once from the
#                                     examples, never overwritten), credentials/ (0700)
#   /var/lib/badge-gateway/backups/   the journal before each upgrade (the last 5)
# Files under /usr/local/lib are the installer's and are replaced on upgrade; local changes
# go in /etc (`systemctl edit badge-gateway`), which wins. In /etc, install.sh changes only
# /etc/badge-gateway (created once; badges.csv kept 0600 badge-gateway) and copies of its
# own files a manual install left: an identical copy in /etc/systemd/system,
# /etc/udev/rules.d or /etc/modprobe.d is removed, and the old README's unit there (its
# ExecStart runs /opt/badge-gateway/venv/bin/badge-gateway) is moved aside to NAME.bak-DATE.
#
# Exit status: 0 done (or nothing to do); 1 refused with nothing changed (but the Debian
# packages it names), or failed (the message says where); 2 usage; 3 upgrade failed and
# rolled back (the previous release runs again); 4 installed, but the service did not
# become active.
set -euo pipefail

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C.UTF-8
export PATH LC_ALL
umask 022

PREFIX=/opt/badge-gateway
RELEASES=$PREFIX/releases
VENV_LINK=$PREFIX/venv
PREVIOUS_LINK=$PREFIX/previous
BIN_LINK=/usr/local/bin/badge-gateway
UNIT_NAME=badge-gateway.service
UNIT_DIR=/usr/local/lib/systemd/system
DROPIN_DIR=$UNIT_DIR/$UNIT_NAME.d
DROPIN_NAME=onss-credentials.conf
UDEV_RULES=/usr/local/lib/udev/rules.d/60-badge-gateway-nfc.rules
BLACKLIST=/usr/local/lib/modprobe.d/badge-gateway-nfc-blacklist.conf
ETC=/etc/badge-gateway
CONFIG=$ETC/gateway.toml
BADGES=$ETC/badges.csv
CREDENTIALS=$ETC/credentials
ONSS_KEY=$CREDENTIALS/onss-client-key.pem
STATE=/var/lib/badge-gateway
BACKUPS=$STATE/backups
KEEP_BACKUPS=5
ACCOUNT=badge-gateway
SYSTEM_PYTHON=/usr/bin/python3
# Tests point this at another file; the box's own otherwise.
OS_RELEASE=${BADGE_GATEWAY_OS_RELEASE:-/etc/os-release}
# The daemon's configuration overrides (BADGE_GATEWAY_SECTION__KEY) must not leak into the
# checks run here: every command of a release runs with this environment only.
CLEAN_ENV=(env -i "PATH=$PATH" "LC_ALL=$LC_ALL")

CALLER_DIR=$PWD
SOURCE=$(dirname "${BASH_SOURCE[0]}")
case $SOURCE in /*) ;; *) SOURCE=$CALLER_DIR/$SOURCE ;; esac

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
fail() {
    printf 'install.sh: %s\n' "$@" >&2
    exit 1
}

short_usage() {
    echo "usage: sudo ./install.sh [--upgrade] [--wheels DIR] [--onss-key FILE] | --uninstall | --purge | --release-id | --help" >&2
}

# The header above, from "## Install" to its end (the exit status).
usage() {
    sed -n '/^# ## Install/,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$SOURCE/install.sh"
}

MODE=install
UPGRADE=0
WHEELS=
OWN_WHEEL=
ONSS_KEY_FROM=
while [ $# -gt 0 ]; do
    case $1 in
        --upgrade) UPGRADE=1 ;;
        --uninstall) [ "$MODE" = purge ] || MODE=uninstall ;;
        --purge) MODE=purge ;;
        --release-id) MODE=release_id ;;
        --wheels | --onss-key)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                printf 'install.sh: %s needs an argument\n' "$1" >&2
                short_usage
                exit 2
            fi
            if [ "$1" = --wheels ]; then WHEELS=$2; else ONSS_KEY_FROM=$2; fi
            shift
            ;;
        --wheels=* | --onss-key=*)
            if [ "${1%%=*}" = --wheels ]; then WHEELS=${1#*=}; else ONSS_KEY_FROM=${1#*=}; fi
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'install.sh: unknown option: %s\n' "$1" >&2
            short_usage
            exit 2
            ;;
    esac
    shift
done
# Paths given by the caller are relative to where it stands, not to this tree.
absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$CALLER_DIR" "$1" ;; esac; }
[ -z "$WHEELS" ] || WHEELS=$(absolute "$WHEELS")
[ -z "$ONSS_KEY_FROM" ] || ONSS_KEY_FROM=$(absolute "$ONSS_KEY_FROM")
# (Without root, the tree may be unreadable too: that is reported with the rest.)
SOURCE_READABLE=0
if cd "$SOURCE" 2>/dev/null; then
    SOURCE=$PWD
    SOURCE_READABLE=1
fi
if [ "$MODE" != install ] && { [ "$UPGRADE" = 1 ] || [ -n "$WHEELS" ] || [ -n "$ONSS_KEY_FROM" ]; }; then
    printf 'install.sh: --uninstall, --purge and --release-id take no other option\n' >&2
    short_usage
    exit 2
fi

# ---------------------------------------------------------------------------------------
# Facts about this box

in_chroot() {
    if command -v systemd-detect-virt >/dev/null; then
        systemd-detect-virt --quiet --chroot
        return
    fi
    [ "$(stat -Lc %d:%i / 2>/dev/null)" != "$(stat -Lc %d:%i /proc/1/root/. 2>/dev/null)" ]
}

# systemd runs this box (not a chroot, not a container without it): start, stop, reload.
# In a chroot, systemctl answers "offline" (no manager to talk to).
SYSTEMD_UP=0
if [ -d /run/systemd/system ] && ! in_chroot; then
    case $(systemctl is-system-running 2>/dev/null || true) in offline | "") ;; *) SYSTEMD_UP=1 ;; esac
fi

os_field() {
    sed -n "s/^$1=//p" "$OS_RELEASE" 2>/dev/null | head -n 1 | tr -d "\"'"
}

architecture() { dpkg --print-architecture 2>/dev/null || uname -m; }

current_release() {
    local target
    if [ -L "$VENV_LINK" ]; then
        target=$(readlink "$VENV_LINK")
        printf '%s\n' "${target##*/}"
    elif [ -d "$VENV_LINK" ]; then
        printf 'manual\n' # a virtual environment made by hand (the README's old way)
    fi
}

# The files a release is made of, NUL-separated, in a fixed order: the Python package, the
# README it copies and the files under systemd/ and config/ it installs.
source_files() {
    find pyproject.toml README.md gateway drivers onss_sim systemd config -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z
}

release_id() {
    local version hash
    version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
    hash=$(source_files | xargs -0 sha256sum | sha256sum | cut -c 1-12)
    printf '%s-%s\n' "$version" "$hash"
}

python_tag() { "$SYSTEM_PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")'; }

# The machine names a wheel built for this Debian architecture carries in its platform tag.
wheel_machines() {
    case $1 in
        amd64) echo 'x86_64' ;;
        arm64) echo 'aarch64' ;;
        armhf) echo 'armv6l armv7l armv8l' ;;
    esac
}

# A wheel file fits this box: pure Python, or built for its CPython and machine.
wheel_fits() {
    local name=${1%.whl} arch=$2 pytag=$3 platform abi machine
    platform=${name##*-}
    name=${name%-*}
    abi=${name##*-}
    [ "$platform" = any ] && return 0
    case $abi in "$pytag" | abi3 | none) ;; *) return 1 ;; esac
    for machine in $(wheel_machines "$arch"); do
        case $platform in *"$machine"*) return 0 ;; esac
    done
    return 1
}

# Every problem that forbids installing, one line each, before anything is changed.
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

check_box() {
    [ "$(id -u)" -eq 0 ] || problem "must run as root (sudo ./install.sh)"
    local id codename arch
    if [ ! -r "$OS_RELEASE" ]; then
        problem "cannot read $OS_RELEASE: Debian 12 (bookworm) or Raspberry Pi OS bookworm is required"
    else
        id=$(os_field ID)
        codename=$(os_field VERSION_CODENAME)
        case $id/$codename in
            debian/bookworm | raspbian/bookworm) ;;
            *) problem "this is ${id:-an unknown system} ${codename:-(no VERSION_CODENAME)} ($OS_RELEASE): Debian 12 (bookworm) or Raspberry Pi OS bookworm is required" ;;
        esac
    fi
    arch=$(architecture)
    case $arch in amd64 | arm64 | armhf) ;; *) problem "architecture $arch is not supported (amd64, arm64, armhf)" ;; esac
    command -v systemctl >/dev/null || problem "systemd is not installed (systemctl not found)"
}

check_install_input() {
    local file missing=()
    if [ "$SOURCE_READABLE" = 0 ]; then
        problem "cannot read the tree $SOURCE"
        return
    fi
    for file in pyproject.toml README.md gateway/__init__.py systemd/$UNIT_NAME \
        systemd/$UNIT_NAME.d/$DROPIN_NAME systemd/60-badge-gateway-nfc.rules \
        systemd/badge-gateway-nfc-blacklist.conf config/gateway.example.toml \
        config/badges.example.csv; do
        [ -f "$file" ] || missing+=("$file")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        RELEASE_ID=$(release_id)
    else
        problem "$SOURCE is not a complete badge-gateway tree: missing ${missing[*]}"
    fi
    if [ "$UPGRADE" = 1 ] && [ -z "$(current_release)" ]; then
        problem "--upgrade: badge-gateway is not installed here ($VENV_LINK); run ./install.sh without --upgrade"
    fi
    [ -z "$WHEELS" ] || check_wheels
    if [ -n "$ONSS_KEY_FROM" ]; then
        if [ ! -f "$ONSS_KEY_FROM" ] || [ ! -r "$ONSS_KEY_FROM" ]; then
            problem "--onss-key $ONSS_KEY_FROM: no such readable file"
        elif ! grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$ONSS_KEY_FROM"; then
            problem "--onss-key $ONSS_KEY_FROM: not a PEM private key (no BEGIN ... PRIVATE KEY line)"
        fi
    fi
    if [ -e "$CONFIG" ] && [ ! -f "$CONFIG" ]; then
        problem "$CONFIG exists but is not a file"
    fi
    check_space
}

check_wheels() {
    if [ ! -d "$WHEELS" ]; then
        problem "--wheels $WHEELS: no such directory (build one with ./dev wheels DIR)"
        return
    fi
    local wheel name arch pytag count=0 misfits=()
    arch=$(architecture)
    pytag=$(python_tag 2>/dev/null || echo cp311)
    for wheel in "$WHEELS"/*.whl; do
        [ -f "$wheel" ] || continue
        count=$((count + 1))
        name=${wheel##*/}
        wheel_fits "$name" "$arch" "$pytag" || misfits+=("$name")
    done
    if [ "$count" -eq 0 ]; then
        problem "--wheels $WHEELS: no wheel (*.whl) in it (build it with ./dev wheels DIR)"
        return
    fi
    # The project itself: its own wheel when it was built from exactly this tree, else
    # built here from the tree by the wheelhouse's setuptools.
    local own verdict=
    for own in "$WHEELS"/badge_gateway-*.whl; do
        [ -f "$own" ] || continue
        if [ ! -x "$SYSTEM_PYTHON" ]; then
            verdict="cannot be compared with this tree without $SYSTEM_PYTHON"
        elif verdict=$(wheel_differs "$own"); then
            OWN_WHEEL=$own
            break
        fi
    done
    if [ -z "$OWN_WHEEL" ] && ! compgen -G "$WHEELS/setuptools-*.whl" >/dev/null; then
        if [ -n "$verdict" ]; then
            problem "--wheels $WHEELS: ${own##*/} was not built from this tree ($verdict), and there is no setuptools wheel to build it here; rebuild it with ./dev wheels DIR"
        else
            problem "--wheels $WHEELS: neither a badge_gateway wheel nor setuptools (to build it); rebuild it with ./dev wheels DIR"
        fi
    fi
    # A wheelhouse may serve several architectures: a compiled package must have one wheel
    # for this box, whatever else is there.
    local misfit package
    for misfit in "${misfits[@]}"; do
        package=${misfit%%-*}
        if ! compgen -G "$WHEELS/$package-*.whl" >/dev/null; then continue; fi
        local fits=0 other
        for other in "$WHEELS/$package"-*.whl; do
            if wheel_fits "${other##*/}" "$arch" "$pytag"; then fits=1; fi
        done
        [ "$fits" = 1 ] || problem "--wheels $WHEELS: $misfit is not for this box ($arch, $pytag) and no other $package wheel is; build the wheelhouse with ./dev wheels on a $arch machine with Debian bookworm"
    done
}

free_kb() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }

# wheel_differs WHEEL: succeed (silently) when WHEEL holds exactly this tree's package files
# and dependencies; otherwise print the first difference and fail.
wheel_differs() {
    "$SYSTEM_PYTHON" -I - "$1" <<'EOF'
import re, sys, tomllib, zipfile
from pathlib import Path

def differ(reason):
    print(reason)
    sys.exit(1)

try:
    wheel = zipfile.ZipFile(sys.argv[1])
except (OSError, zipfile.BadZipFile) as error:
    differ(f"cannot read it: {error}")
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
names = [n for n in wheel.namelist() if not n.endswith("/")]
packaged = {n for n in names if ".dist-info/" not in n}
tree = {
    str(p) for top in ("gateway", "drivers", "onss_sim") for p in Path(top).rglob("*")
    if p.is_file() and (p.suffix == ".py" or str(p) in packaged) and "__pycache__" not in p.parts
}
for name in sorted(packaged | tree):
    if name not in packaged or name not in tree:
        differ(f"{name} is only in {'the wheel' if name in packaged else 'the tree'}")
    if wheel.read(name) != Path(name).read_bytes():
        differ(f"{name} differs")
metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
text = wheel.read(metadata).decode()
version = re.search(r"^Version: (.*)$", text, re.M)
if version is None or version.group(1).strip() != project["version"]:
    differ(f"version {version and version.group(1)}, the tree's {project['version']}")
flat = lambda items: sorted(re.sub(r"\s", "", i).lower() for i in items)
required = [m for m in re.findall(r"^Requires-Dist: (.*)$", text, re.M) if "extra ==" not in m]
if flat(required) != flat(project.get("dependencies", [])):
    differ("its dependencies differ from pyproject.toml's")
EOF
}

check_space() {
    local where=/ need_kb=250000 avail journal_kb
    [ -n "${RELEASE_ID:-}" ] || return 0
    if [ ! -f "$RELEASES/$RELEASE_ID/.release" ]; then
        [ -d /opt ] && where=/opt
        avail=$(free_kb "$where")
        if [ "$avail" -lt "$need_kb" ]; then
            problem "only $((avail / 1024)) MB free on $where; a release needs about $((need_kb / 1024)) MB"
        fi
    fi
    # An upgrade backs the journal up first (the default place; a journal elsewhere is
    # checked by the backup itself).
    if [ "$(current_release)" != "$RELEASE_ID" ] && [ -f "$STATE/journal.db" ]; then
        journal_kb=$(du -kc "$STATE"/journal.db* | awk 'END { print $1 }')
        avail=$(free_kb "$STATE")
        if [ "$avail" -lt $((journal_kb + journal_kb / 10 + 10240)) ]; then
            problem "only $((avail / 1024)) MB free on $STATE; the journal's backup before the upgrade needs $((journal_kb / 1024 + 10)) MB"
        fi
    fi
}

report_problems() {
    [ ${#PROBLEMS[@]} -eq 0 ] && return 0
    local line
    for line in "${PROBLEMS[@]}"; do printf 'install.sh: cannot %s: %s\n' "$1" "$line" >&2; done
    printf 'install.sh: nothing was changed\n' >&2
    exit 1
}

# ---------------------------------------------------------------------------------------
# Changes, each made only when needed: a re-run of the same tree changes nothing.

CHANGED=0
SERVICE_CHANGED=0 # the unit, its drop-in, the credential or the release: restart it
UNITS_CHANGED=0   # daemon-reload
UDEV_CHANGED=0
REENABLE=0
changed() {
    CHANGED=1
    say "$*"
}

# install_file SRC DEST MODE OWNER GROUP: replace DEST when its content, mode or owner differ.
# Called in conditions (set -e is off in it): every step checks its own failure.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=$4 group=$5
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest" &&
        [ "$(stat -c '%a %U %G' "$dest")" = "${mode#0} $owner $group" ]; then
        return 1
    fi
    install -D -m "$mode" -o "$owner" -g "$group" "$src" "$dest" ||
        fail "could not install $dest (above: a full disk, a read-only file system?)"
    changed "installed $dest"
}

# ensure_dir DIR MODE OWNER GROUP
ensure_dir() {
    local dir=$1 mode=$2 owner=$3 group=$4
    if [ -d "$dir" ] && [ "$(stat -c '%a %U %G' "$dir")" = "${mode#0} $owner $group" ]; then
        return 0
    fi
    install -d -m "$mode" -o "$owner" -g "$group" "$dir" ||
        fail "could not make $dir (above: a full disk, a read-only file system?)"
    changed "made $dir ($mode $owner:$group)"
}

# ensure_link TARGET LINK: a symlink, replaced atomically (ln -s, then mv -T over it).
ensure_link() {
    local target=$1 link=$2
    [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ] && return 0
    { mkdir -p "$(dirname "$link")" && ln -sfn "$target" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link"; } ||
        fail "could not link $link -> $target (above)"
    changed "linked $link -> $target"
}

# What building a release needs; the rest (libusb for USB NFC readers, the CA bundle for
# the ONSS's TLS) is installed once the release and the configuration passed their checks.
build_packages() {
    local packages=(python3 python3-venv)
    if [ -z "$WHEELS" ]; then
        # evdev and gpiod have no wheels; on armhf neither has cffi (cryptography's).
        packages+=(gcc python3-dev)
        [ "$(architecture)" = armhf ] && packages+=(libffi-dev)
    fi
    printf '%s\n' "${packages[@]}"
}

runtime_packages() { printf '%s\n' libusb-1.0-0 ca-certificates; }

APT_INSTALLED=()
# ensure_debian_packages PACKAGE...
ensure_debian_packages() {
    local package missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >"$WORK/apt.log" 2>&1; then
        # Package lists may be missing (a fresh image) or stale: fetch them once, retry.
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >>"$WORK/apt.log" 2>&1; then
            tail -n 15 "$WORK/apt.log" >&2
            remove_new_release
            fail "apt-get could not install: ${missing[*]}" \
                "(offline: install them from a local mirror or .deb files, then run again);" \
                "$(unchanged)"
        fi
    fi
    APT_INSTALLED+=("${missing[@]}")
    CHANGED=1
}

# What a refusal after the checks leaves: nothing, but the Debian packages it needed.
unchanged() {
    if [ ${#APT_INSTALLED[@]} -eq 0 ]; then
        echo "nothing was changed"
    else
        echo "nothing was changed but the Debian packages installed for it: ${APT_INSTALLED[*]}"
    fi
}

# Build the release's virtual environment in place (a venv cannot move), from a copy of
# the tree: what was hashed is what is installed, and the checkout stays clean.
BUILT_HERE=0
CREATED_PREFIX=0
build_release() {
    local dir=$RELEASES/$RELEASE_ID
    [ -f "$dir/.release" ] && return 0
    [ -d "$PREFIX" ] || CREATED_PREFIX=1
    rm -rf "$dir"
    mkdir -p "$RELEASES"
    BUILT_HERE=1
    CHANGED=1
    local started=$SECONDS from="the package index"
    [ -n "$WHEELS" ] && from=$WHEELS
    say "building release $RELEASE_ID in $dir from $from (minutes on a Pi)"
    mkdir "$WORK/src"
    source_files | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
    "$SYSTEM_PYTHON" -m venv "$dir"
    local pip=("$dir/bin/python" -m pip install --no-cache-dir --disable-pip-version-check
        --no-warn-script-location --root-user-action=ignore --no-input)
    local project=$WORK/src
    if [ -n "$WHEELS" ]; then
        pip+=(--isolated --no-index --find-links "$WHEELS")
        # The project's own wheel only when it holds this tree (checked before), else the
        # tree itself, built by the wheelhouse's setuptools: what was hashed is what runs.
        [ -z "$OWN_WHEEL" ] || project=$OWN_WHEEL
    fi
    local passed=() name
    if [ -z "$WHEELS" ]; then
        # Online: a proxy or a mirror set by the caller still applies (/etc/pip.conf too).
        for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
            PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_CERT; do
            [ -z "${!name:-}" ] || passed+=("$name=${!name}")
        done
    fi
    if ! "${CLEAN_ENV[@]}" HOME=/root "${passed[@]}" "${pip[@]}" "$project" >"$WORK/pip.log" 2>&1; then
        tail -n 20 "$WORK/pip.log" >&2
        local wanted
        wanted=$(sed -n 's/.*Could not find a version that satisfies the requirement \([^ ]*\).*/\1/p' "$WORK/pip.log" | head -n 1)
        if [ -n "$WHEELS" ] && [ -n "$wanted" ]; then
            fail_build "--wheels $WHEELS lacks a wheel for $wanted ($(architecture), $(python_tag)); rebuild it with ./dev wheels on a machine like this one"
        fi
        fail_build "pip could not install release $RELEASE_ID (its output above)"
    fi
    install -m 0644 README.md "$dir/README.md"
    mkdir -p "$dir/share"
    cp -r systemd config "$dir/share/"
    {
        printf 'release=%s\n' "$RELEASE_ID"
        printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf 'from=%s\n' "$from"
        printf 'architecture=%s\n' "$(architecture)"
    } >"$dir/.release.tmp"
    mv "$dir/.release.tmp" "$dir/.release"
    say "built release $RELEASE_ID in $((SECONDS - started)) s"
}

# Undo build_release: nothing of a refused release stays behind.
remove_new_release() {
    [ "$BUILT_HERE" = 1 ] || return 0
    rm -rf "${RELEASES:?}/$RELEASE_ID"
    if [ "$CREATED_PREFIX" = 1 ]; then rm -rf "$PREFIX"; fi
}

fail_build() {
    remove_new_release
    fail "$1" "$(unchanged)"
}

# account_can_read FILE: by its mode, FILE is readable by the daemon's user (which may not
# exist yet): as its owner, through the group of its name, or as anyone.
account_can_read() {
    local mode user group
    read -r mode user group < <(stat -c '%a %U %G' "$1")
    mode=$((8#$mode))
    [ $((mode & 8#004)) -ne 0 ] && return 0
    [ "$group" = "$ACCOUNT" ] && [ $((mode & 8#040)) -ne 0 ] && return 0
    [ "$user" = "$ACCOUNT" ] && [ $((mode & 8#400)) -ne 0 ]
}

# The configuration in /etc (or the example that will become it) must satisfy the release
# about to run it: the unit's ExecStartPre would refuse it at every start. The daemon's user
# runs that check: an existing configuration is checked as that user when it exists, and
# its mode must let that user read it (the account is made only once the checks passed).
check_config() {
    local release=$1 file=$CONFIG output run=("${CLEAN_ENV[@]}")
    if [ -f "$file" ]; then
        if ! account_can_read "$file"; then
            remove_new_release
            fail "the $ACCOUNT user could not read $file ($(stat -c '%a %U:%G' "$file")): the daemon reads it;" \
                "make it readable by the group $ACCOUNT (chgrp $ACCOUNT $file; chmod 0640 $file; groupadd --system $ACCOUNT first if missing), then run install.sh again;" \
                "$(unchanged)"
        fi
        getent passwd "$ACCOUNT" >/dev/null && run=(as_account)
    else
        file=$SOURCE/config/gateway.example.toml
    fi
    if ! output=$("${run[@]}" "$release/bin/badge-gateway" --config "$file" config check 2>&1); then
        printf 'install.sh: %s is not valid for release %s:\n' "$file" "$RELEASE_ID" >&2
        printf '%s\n' "$output" | sed 's/^/    /' >&2
        remove_new_release
        fail "fix $file (badge-gateway config check $file), then run install.sh again;" \
            "$(unchanged)"
    fi
}

unit_groups() { sed -n 's/^SupplementaryGroups=//p' "systemd/$UNIT_NAME" | tr ' ' '\n' | sed '/^$/d'; }

ensure_account() {
    local group
    for group in $(unit_groups); do
        # A group named in SupplementaryGroups= that does not exist stops the unit.
        getent group "$group" >/dev/null || {
            groupadd --system "$group"
            changed "created the system group $group"
        }
    done
    if ! getent passwd "$ACCOUNT" >/dev/null; then
        getent group "$ACCOUNT" >/dev/null || groupadd --system "$ACCOUNT"
        useradd --system --gid "$ACCOUNT" --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "badge-gateway daemon" "$ACCOUNT"
        changed "created the system user $ACCOUNT"
    fi
    # GPIO feedback (gpio, Raspberry Pi OS) and a console display (tty), where they exist.
    for group in gpio tty; do
        if getent group "$group" >/dev/null && ! id -nG "$ACCOUNT" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" "$ACCOUNT"
            changed "added $ACCOUNT to the group $group"
        fi
    done
}

ensure_etc() {
    ensure_dir "$ETC" 0755 root root
    if [ ! -e "$CONFIG" ]; then
        install -m 0640 -o root -g "$ACCOUNT" config/gateway.example.toml "$CONFIG"
        changed "created $CONFIG from the example: edit it (site, readers)"
        CREATED_CONFIG=1
    fi
    if [ ! -e "$BADGES" ]; then
        install -m 0600 -o "$ACCOUNT" -g "$ACCOUNT" config/badges.example.csv "$BADGES"
        changed "created $BADGES from the example: replace it with the employer's register"
    elif [ -f "$BADGES" ] && { [ -n "$(find "$BADGES" -perm /077)" ] || [ "$(stat -c %U "$BADGES")" != "$ACCOUNT" ]; }; then
        # Put there before (an image builder): national numbers, for the daemon alone.
        local was
        was=$(stat -c '%a %U:%G' "$BADGES")
        { chown "$ACCOUNT:$ACCOUNT" "$BADGES" && chmod 0600 "$BADGES"; } ||
            fail "could not make $BADGES 0600 $ACCOUNT:$ACCOUNT (above)"
        changed "made $BADGES 0600 $ACCOUNT:$ACCOUNT (it was $was): it holds national numbers; its content is unchanged"
    fi
    ensure_dir "$CREDENTIALS" 0700 root root
    if [ -n "$ONSS_KEY_FROM" ] && install_file "$ONSS_KEY_FROM" "$ONSS_KEY" 0600 root root; then
        SERVICE_CHANGED=1
    fi
    local file
    for file in "$CONFIG" "$BADGES"; do
        as_account test -r "$file" ||
            warn "the $ACCOUNT user cannot read $file ($(stat -c '%a %U:%G' "$file")): the daemon needs it"
    done
    if uplink_wants_the_credential && [ ! -f "$ONSS_KEY" ]; then
        warn "[uplink] is enabled but $ONSS_KEY is missing: taps are stored and wait until it is" \
            "in place (install.sh --onss-key FILE; docs/deployment.md, \"The ONSS key\")"
    fi
}

# [uplink] enabled = true with the key as the systemd credential (the default private_key).
uplink_wants_the_credential() {
    local section
    section=$(sed -n '/^\[uplink\]/,/^\[/p' "$CONFIG")
    grep -Eq '^enabled *= *true' <<<"$section" || return 1
    ! grep -Eq '^private_key *= *"/' <<<"$section"
}

as_account() {
    (cd / && setpriv --reuid="$ACCOUNT" --regid="$ACCOUNT" --init-groups -- "${CLEAN_ENV[@]}" "$@")
}

# A copy of a file install.sh ships, left in /etc by a manual install, would hide the one
# installed here: remove it when it is the same file; a unit running the manual install's
# venv (the README's old way, whatever version of the unit it copied) is moved aside;
# otherwise say so.
shadowing_copy() {
    local ours=$1 theirs=$2 aside
    [ -f "$theirs" ] && [ ! -L "$theirs" ] || return 0
    if cmp -s "$ours" "$theirs"; then
        rm -f "$theirs"
        changed "removed $theirs, a copy of $ours (a manual install's)"
    elif grep -Eq "^ExecStart=[-@:+!]*$VENV_LINK/bin/badge-gateway( |\$)" "$theirs"; then
        aside=$theirs.bak-$(date -u +%Y%m%dT%H%M%SZ)
        [ ! -e "$aside" ] || aside=$aside.$$
        mv "$theirs" "$aside" || fail "could not move $theirs aside (above)"
        changed "moved $theirs, an old manual install's unit, to $aside: the one installed in $UNIT_DIR runs now"
    else
        warn "$theirs overrides the installed ${theirs##*/}; remove it if it is an old copy"
    fi
}

# ensure_system_files RELEASE: the unit, its drop-in, the udev rules and the blacklist as
# RELEASE ships them.
ensure_system_files() {
    local share=$RELEASES/$1/share
    install_file "$share/systemd/$UNIT_NAME" "$UNIT_DIR/$UNIT_NAME" 0644 root root && UNITS_CHANGED=1
    if [ -f "/etc/systemd/system/$UNIT_NAME" ]; then
        shadowing_copy "$share/systemd/$UNIT_NAME" "/etc/systemd/system/$UNIT_NAME"
        # Its enablement links point at the removed copy: made again for this one.
        [ -e "/etc/systemd/system/$UNIT_NAME" ] || { REENABLE=1 && UNITS_CHANGED=1; }
    fi
    # The credential drop-in loads the key: installed exactly when the key is in place, as
    # the unit would not start with LoadCredential= naming a missing file.
    if [ -f "$ONSS_KEY" ]; then
        install_file "$share/systemd/$UNIT_NAME.d/$DROPIN_NAME" "$DROPIN_DIR/$DROPIN_NAME" 0644 root root &&
            UNITS_CHANGED=1
    elif [ -e "$DROPIN_DIR/$DROPIN_NAME" ]; then
        rm -f "$DROPIN_DIR/$DROPIN_NAME"
        rmdir "$DROPIN_DIR" 2>/dev/null || true
        UNITS_CHANGED=1
        changed "removed the credential drop-in: no key at $ONSS_KEY"
    fi
    if [ -f "/etc/systemd/system/$UNIT_NAME.d/$DROPIN_NAME" ]; then
        shadowing_copy "$share/systemd/$UNIT_NAME.d/$DROPIN_NAME" "/etc/systemd/system/$UNIT_NAME.d/$DROPIN_NAME"
        rmdir "/etc/systemd/system/$UNIT_NAME.d" 2>/dev/null || true
    fi
    [ "$UNITS_CHANGED" = 1 ] && SERVICE_CHANGED=1
    install_file "$share/systemd/60-badge-gateway-nfc.rules" "$UDEV_RULES" 0644 root root && UDEV_CHANGED=1
    shadowing_copy "$share/systemd/60-badge-gateway-nfc.rules" /etc/udev/rules.d/60-badge-gateway-nfc.rules
    install_file "$share/systemd/badge-gateway-nfc-blacklist.conf" "$BLACKLIST" 0644 root root || true
    shadowing_copy "$share/systemd/badge-gateway-nfc-blacklist.conf" /etc/modprobe.d/badge-gateway-nfc-blacklist.conf
}

ensure_links() {
    ensure_link venv/README.md "$PREFIX/README.md"
    ensure_link "$VENV_LINK/bin/badge-gateway" "$BIN_LINK"
}

# ---------------------------------------------------------------------------------------
# The journal across an upgrade

# Running, or starting (a unit restarting after a failure counts: it is meant to run).
service_active() {
    [ "$SYSTEMD_UP" = 1 ] || return 1
    case $(systemctl is-active "$UNIT_NAME" 2>/dev/null) in active | activating | reloading) return 0 ;; esac
    return 1
}

# Stopped whatever its state: a unit restarting in a loop would take the journal's lock.
WAS_ACTIVE=0
stop_service() {
    [ "$SYSTEMD_UP" = 1 ] || return 0
    if service_active; then
        WAS_ACTIVE=1
        say "stopping $UNIT_NAME"
    fi
    systemctl stop "$UNIT_NAME" 2>/dev/null || true
}

# The old release again, as it was: its symlink never moved, the unit files were not yet
# replaced; start it if it was running.
roll_back() {
    printf 'install.sh: %s\n' "$@" >&2
    remove_new_release
    if [ "$WAS_ACTIVE" = 1 ]; then
        if systemctl start "$UNIT_NAME"; then
            say "release $OLD_RELEASE runs again" >&2
        else
            warn "release $OLD_RELEASE did not start again: systemctl status $UNIT_NAME"
        fi
    fi
    exit 3
}

# journal_state FILE: what must not change when a migration fails.
journal_state() { sha256sum "$1" | cut -d ' ' -f 1; }

migrate_journal() {
    local bg=("$RELEASES/$RELEASE_ID/bin/badge-gateway" --config "$CONFIG")
    local journal
    journal=$("${CLEAN_ENV[@]}" "${bg[@]}" journal path)
    if [ ! -f "$journal" ]; then
        say "no journal yet at $journal: nothing to migrate"
        return 0
    fi
    ensure_dir "$BACKUPS" 0700 "$ACCOUNT" "$ACCOUNT"
    local backup
    backup=$BACKUPS/journal-$(date -u +%Y%m%dT%H%M%SZ)-before-$RELEASE_ID.db
    local output
    if ! output=$(as_account "${bg[@]}" journal backup "$backup" 2>&1); then
        roll_back "could not back up $journal before migrating it: $output" \
            "the journal was not touched; release $RELEASE_ID was removed"
    fi
    BACKUP_TAKEN=$backup
    say "$output"
    local had_wal=0 before
    [ -s "$journal-wal" ] && had_wal=1
    before=$(journal_state "$journal")
    if output=$(as_account "${bg[@]}" journal migrate 2>&1); then
        say "$output"
        case $output in *", migrated") SCHEMA_CHANGED=1 ;; esac
        return 0
    fi
    printf '%s\n' "$output" | sed 's/^/    /' >&2
    # Prove the rollback: the same bytes, or (when a crash had left a WAL, which closing
    # the file checkpoints) a backup made now identical to the one made before.
    local verdict
    if [ "$had_wal" = 0 ] && [ "$(journal_state "$journal")" = "$before" ]; then
        verdict="$journal is byte for byte as it was"
    else
        local again=$BACKUPS/.after-failed-migration.db
        rm -f "$again"
        if as_account "${bg[@]}" journal backup "$again" >/dev/null 2>&1 && cmp -s "$again" "$backup"; then
            verdict="$journal holds exactly what it held (a backup made now is identical to $backup)"
        else
            verdict="$journal may have changed: restore it from $backup (with $UNIT_NAME stopped)"
        fi
        rm -f "$again"
    fi
    roll_back "the journal migration failed; $verdict;" \
        "release $RELEASE_ID was removed${OLD_RELEASE:+, release $OLD_RELEASE is still the installed one}"
}

BACKUP_TAKEN=
prune() {
    local keep_current keep_previous dir
    keep_current=$RELEASE_ID
    keep_previous=$(readlink "$PREVIOUS_LINK" 2>/dev/null || true)
    keep_previous=${keep_previous##*/}
    for dir in "$RELEASES"/*; do
        [ -d "$dir" ] || continue
        case ${dir##*/} in "$keep_current" | "$keep_previous") continue ;; esac
        rm -rf "$dir"
        changed "removed the old release ${dir##*/}"
    done
    if [ -d "$BACKUPS" ]; then
        # By the date in their names, which is the box's clock (a Pi has none of its own:
        # it may be in the past): the backup just taken is kept whatever its date.
        local old keep=$KEEP_BACKUPS
        [ -z "$BACKUP_TAKEN" ] || keep=$((KEEP_BACKUPS - 1))
        while read -r old; do
            [ -n "$old" ] || continue
            rm -f "$old"
            say "removed the old backup ${old##*/}"
        done < <(find "$BACKUPS" -maxdepth 1 -name 'journal-*.db' ! -path "$BACKUP_TAKEN" | sort | head -n "-$keep")
    fi
}

# Point venv at the new release (the old one becomes previous); a manual install's venv
# directory is moved aside (it cannot work from another path) and removed.
SWITCHED=0
SCHEMA_CHANGED=0
PREVIOUS_BEFORE=
switch_release() {
    PREVIOUS_BEFORE=$(readlink "$PREVIOUS_LINK" 2>/dev/null || true)
    SWITCHED=1
    if [ -n "$OLD_RELEASE" ] && [ "$OLD_RELEASE" != manual ]; then
        ensure_link "releases/$OLD_RELEASE" "$PREVIOUS_LINK"
    fi
    if [ "$OLD_RELEASE" = manual ]; then
        mv -T "$VENV_LINK" "$PREFIX/venv.manual.$$"
        rm -rf "$PREFIX/venv.manual.$$"
        say "removed the manually made $VENV_LINK"
        [ -d "$PREFIX/src" ] && warn "$PREFIX/src is a manual install's copy, unused now: remove it when you like"
    fi
    ensure_link "releases/$RELEASE_ID" "$VENV_LINK"
    SERVICE_CHANGED=1
}

start_service() {
    if [ "$SYSTEMD_UP" = 1 ]; then
        # A run cut short may have replaced the unit files without reloading them.
        if [ "$UNITS_CHANGED" = 1 ] ||
            [ "$(systemctl show -p NeedDaemonReload --value "$UNIT_NAME" 2>/dev/null)" = yes ]; then
            systemctl daemon-reload
        fi
        if [ "$UDEV_CHANGED" = 1 ] && command -v udevadm >/dev/null; then
            udevadm control --reload || true
            udevadm trigger --subsystem-match=usb --action=change || true
        fi
    fi
    if [ "$REENABLE" = 1 ]; then
        systemctl reenable --quiet "$UNIT_NAME"
        changed "enabled $UNIT_NAME again, as installed here"
    elif ! systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
        systemctl enable --quiet "$UNIT_NAME"
        changed "enabled $UNIT_NAME"
    fi
    if [ "$SYSTEMD_UP" = 0 ]; then
        if [ "$CHANGED" = 1 ]; then
            say "systemd is not running here (a chroot or an image build): $UNIT_NAME is enabled and starts at the next boot"
        fi
        return 0
    fi
    # Enabled but stopped with nothing to change: a run cut short between stopping it and
    # starting it again left it so.
    if [ "$SERVICE_CHANGED" = 0 ] && ! service_active; then
        changed "$UNIT_NAME is enabled but not running"
        SERVICE_CHANGED=1
    fi
    if [ "$SERVICE_CHANGED" = 1 ]; then
        # Type=notify: this returns once the daemon said READY=1 (or failed).
        say "starting $UNIT_NAME"
        if systemctl restart "$UNIT_NAME" && systemctl is-active --quiet "$UNIT_NAME"; then
            say "$UNIT_NAME is active: $(systemctl show -p StatusText --value "$UNIT_NAME")"
        else
            systemctl --no-pager --lines=15 status "$UNIT_NAME" >&2 || true
            start_failed
        fi
    fi
}

# The new release did not start. A box that no longer takes taps is the worst outcome, so
# the previous release is put back and started, unless the journal was migrated (the old
# release cannot read it then: a person decides, docs/deployment.md "Rollback").
start_failed() {
    if [ "$SWITCHED" = 1 ] && [ "$SCHEMA_CHANGED" = 0 ] && [ -n "$OLD_RELEASE" ] &&
        [ -f "$RELEASES/$OLD_RELEASE/.release" ] && [ -d "$RELEASES/$OLD_RELEASE/share" ]; then
        systemctl stop "$UNIT_NAME" || true
        ensure_system_files "$OLD_RELEASE"
        ensure_link "releases/$OLD_RELEASE" "$VENV_LINK"
        if [ -n "$PREVIOUS_BEFORE" ]; then
            ensure_link "$PREVIOUS_BEFORE" "$PREVIOUS_LINK"
        else
            rm -f "$PREVIOUS_LINK"
        fi
        remove_new_release
        systemctl daemon-reload
        if systemctl start "$UNIT_NAME" && systemctl is-active --quiet "$UNIT_NAME"; then
            printf 'install.sh: %s\n' "release $RELEASE_ID did not start (above): rolled back," \
                "release $OLD_RELEASE runs again (journalctl -u $UNIT_NAME says why)" >&2
        else
            printf 'install.sh: %s\n' "release $RELEASE_ID did not start (above) and, rolled back," \
                "release $OLD_RELEASE did not either: journalctl -u $UNIT_NAME says why" >&2
        fi
        exit 3
    fi
    local why
    if [ -z "$OLD_RELEASE" ]; then
        why="it is the first release here"
    elif [ "$SWITCHED" = 0 ]; then
        why="this run did not change the release"
    elif [ "$SCHEMA_CHANGED" = 1 ]; then
        why="the journal was migrated to its new schema, which the previous release cannot read"
    elif [ "$OLD_RELEASE" = manual ]; then
        why="the previous install was a manual one, now removed"
    else
        why="release $OLD_RELEASE is not complete in $RELEASES"
    fi
    printf 'install.sh: %s\n' "release $RELEASE_ID is installed but $UNIT_NAME did not become active (above);" \
        "journalctl -u $UNIT_NAME says why; not rolled back: $why (docs/deployment.md, \"Rollback\")" >&2
    exit 4
}

# ---------------------------------------------------------------------------------------

install_main() {
    local packages
    check_box
    check_install_input
    report_problems install
    OLD_RELEASE=$(current_release)

    lock
    mapfile -t packages < <(build_packages)
    ensure_debian_packages "${packages[@]}"
    build_release
    check_config "$RELEASES/$RELEASE_ID"
    mapfile -t packages < <(runtime_packages)
    ensure_debian_packages "${packages[@]}"
    ensure_account
    ensure_etc
    if [ "$OLD_RELEASE" != "$RELEASE_ID" ]; then
        [ -n "$OLD_RELEASE" ] && say "upgrading from release $OLD_RELEASE to $RELEASE_ID"
        stop_service
        migrate_journal
        ensure_system_files "$RELEASE_ID"
        switch_release
        ensure_links
    else
        ensure_system_files "$RELEASE_ID"
        ensure_links
    fi
    start_service
    prune
    if [ "$CHANGED" = 0 ]; then
        say "release $RELEASE_ID already installed, nothing to do"
    else
        say "release $RELEASE_ID installed"
        next_steps
    fi
}

CREATED_CONFIG=0
next_steps() {
    [ "$CREATED_CONFIG" = 1 ] || return 0
    cat <<EOF
install.sh: next: edit $CONFIG and $BADGES (badge-gateway readers list shows the readers),
install.sh:       check them: badge-gateway config check && badge-gateway badges check $BADGES
install.sh:       then: systemctl restart $UNIT_NAME; badge-gateway status
EOF
}

uninstall_main() {
    [ "$(id -u)" -eq 0 ] || problem "must run as root (sudo ./install.sh $([ "$MODE" = purge ] && echo --purge || echo --uninstall))"
    report_problems uninstall
    lock
    # Restarting in a loop counts too: its files must not go from under it.
    stop_service
    [ "$WAS_ACTIVE" = 0 ] || CHANGED=1
    if [ -f "$UNIT_DIR/$UNIT_NAME" ] && systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
        systemctl disable --quiet "$UNIT_NAME"
        changed "disabled $UNIT_NAME"
    fi
    local path
    for path in "$UNIT_DIR/$UNIT_NAME" "$DROPIN_DIR" "$BIN_LINK" "$PREFIX" "$UDEV_RULES" "$BLACKLIST"; do
        if [ -e "$path" ] || [ -L "$path" ]; then
            rm -rf "$path"
            changed "removed $path"
        fi
    done
    # The directories made for these files, when nothing else is in them.
    rmdir /usr/local/lib/udev/rules.d /usr/local/lib/udev /usr/local/lib/modprobe.d \
        "$UNIT_DIR" /usr/local/lib/systemd 2>/dev/null || true
    if [ "$SYSTEMD_UP" = 1 ]; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
        command -v udevadm >/dev/null && { udevadm control --reload || true; }
    fi
    if [ "$MODE" = purge ]; then
        for path in "$ETC" "$STATE"; do
            if [ -e "$path" ]; then
                rm -rf "$path"
                changed "removed $path"
            fi
        done
        if getent passwd "$ACCOUNT" >/dev/null; then
            userdel "$ACCOUNT"
            changed "removed the user $ACCOUNT"
        fi
        if getent group "$ACCOUNT" >/dev/null; then
            groupdel "$ACCOUNT"
            changed "removed the group $ACCOUNT"
        fi
    elif [ -d "$ETC" ] || [ -d "$STATE" ]; then
        say "kept $ETC and $STATE (the journal); --purge removes them"
    fi
    [ "$CHANGED" = 1 ] || say "badge-gateway is not installed here, nothing to do"
}

lock() {
    # Two runs at once would race on the same files. /run is memory on a booted box; a
    # chroot's /run is part of the image, so nothing is left there.
    [ "$SYSTEMD_UP" = 1 ] || return 0
    exec 9>/run/lock/badge-gateway-install.lock
    flock -n 9 || fail "another install.sh is running; nothing was changed"
}

# Whatever ends this run (a failure under set -e, a closed SSH session, Ctrl-C), a service
# it stopped is started again: the release the venv symlink names, old or new. Exits 3 and 4
# have tried that already and said how it went.
on_exit() {
    local status=$?
    set +e
    trap '' HUP INT TERM PIPE
    if [ "$MODE" = install ] && [ "$WAS_ACTIVE" = 1 ] && [ "$status" != 3 ] && [ "$status" != 4 ] &&
        ! service_active; then
        systemctl daemon-reload
        if systemctl start "$UNIT_NAME"; then
            warn "this run stopped $UNIT_NAME and did not finish: started it again (release $(current_release))"
        else
            warn "this run stopped $UNIT_NAME and did not finish; it did not start again: systemctl status $UNIT_NAME"
        fi
    fi
    rm -rf "$WORK"
    exit "$status"
}
WORK=$(mktemp -d)
trap on_exit EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

case $MODE in
    release_id)
        [ "$SOURCE_READABLE" = 1 ] || fail "cannot read the tree $SOURCE"
        release_id
        ;;
    install) install_main ;;
    uninstall | purge) uninstall_main ;;
esac
