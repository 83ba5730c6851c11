# Shared by scripts/test, scripts/bench and .ci/run (sourced, not run):
# installing what a script needs, and running its parts so that one failure
# does not hide the others.
#
# The scripts run on a fresh Debian machine with only the Rust toolchain:
# whatever else they need comes from Debian's packages or from crates.io,
# installed here, with a message that says what and why.

# The name the messages carry: the script that sourced this file.
script_name=${script_name:-${0#./}}

say() { printf '%s: %s\n' "$script_name" "$*" >&2; }

apt_updated=

# need CMD [PACKAGE] [WHY]: installs Debian's PACKAGE (default: CMD) when CMD
# is missing, as root or through sudo. Returns 1, with a message that says
# how to install it by hand, when it cannot.
need() {
    local cmd=$1 package=${2:-$1} why=${3:-}
    command -v "$cmd" >/dev/null 2>&1 && return 0
    say "$cmd is missing: installing Debian's package $package${why:+ ($why)}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            say "cannot install $package: not root and no sudo; run: apt-get install $package"
            return 1
        fi
        sudo=(sudo)
    fi
    if [[ -z $apt_updated ]]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || {
            say "apt-get update failed; run: apt-get install $package"
            return 1
        }
        apt_updated=1
    fi
    # --no-install-recommends: Chromium's recommendations alone are hundreds
    # of megabytes that a headless test never uses. Debian's haproxy postinst
    # may start its service; nothing here uses it (the bench runs its own).
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$package" >/dev/null || {
        say "apt-get install $package failed"
        return 1
    }
    command -v "$cmd" >/dev/null 2>&1 || {
        say "$package did not install $cmd"
        return 1
    }
}

# need_nextest: installs cargo-nextest from crates.io when cargo lacks it.
need_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    say "cargo-nextest is missing: cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
}

# need_pip MODULE PACKAGE... [-- WHY]: installs PACKAGEs from PyPI with
# python3's pip (for the user running the tests) when python3 cannot import
# MODULE. Returns 1, with how to install them by hand, when it cannot.
need_pip() {
    local module=$1
    shift
    local packages=() why=
    while (($#)); do
        if [[ $1 == -- ]]; then
            why=${2:-}
            break
        fi
        packages+=("$1")
        shift
    done
    python3 -c "import $module" >/dev/null 2>&1 && return 0
    command -v python3 >/dev/null 2>&1 || need python3 python3 "$why" || return 1
    python3 -m pip --version >/dev/null 2>&1 || need pip3 python3-pip "$why" || return 1
    say "python3 cannot import $module: pip install ${packages[*]}${why:+ ($why)}"
    # Debian's python marks its packages as system-managed; a test
    # prerequisite goes in the user's site-packages even so.
    python3 -m pip install -q --user "${packages[@]}" 2>/dev/null \
        || python3 -m pip install -q --user --break-system-packages "${packages[@]}" \
        || python3 -m pip install -q "${packages[@]}" || {
        say "pip install ${packages[*]} failed; run it by hand"
        return 1
    }
    python3 -c "import $module" >/dev/null 2>&1 || {
        say "${packages[*]} installed, but python3 still cannot import $module"
        return 1
    }
}

# part NAME CMD ARGS: runs CMD, and when it fails records NAME instead of
# stopping, so that the parts after it still run. `parts_done` then reports.
failed_parts=()
part() {
    local name=$1
    shift
    printf '\n=== %s ===\n' "$name"
    local status=0
    "$@" || status=$?
    if ((status != 0)); then
        say "FAILED: $name (exit status $status)"
        failed_parts+=("$name")
    fi
    return 0
}

# parts_done: exits 1 naming every part that failed, or says that all passed.
parts_done() {
    if ((${#failed_parts[@]})); then
        printf '\n' >&2
        say "${#failed_parts[@]} part(s) failed:"
        local name
        for name in "${failed_parts[@]}"; do
            printf '  - %s\n' "$name" >&2
        done
        exit 1
    fi
    say "every part passed"
}
