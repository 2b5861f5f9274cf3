# Sourced by scripts/demo and scripts/test (from the repo root): a Python >= 3.11 venv in
# .venv with mailbot installed, plus any Debian packages named in $APT_PACKAGES.
# Works on a fresh Debian 12 as root (or with sudo).

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi

# A Python >= 3.11 for the venv: python3.11 first, then python3.
PY=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PY="$(command -v "$candidate")"
        break
    fi
done

venv_ok() {
    [ -x .venv/bin/python ] &&
        .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# ensure_venv EXTRAS: EXTRAS is "" or e.g. "[test]".
ensure_venv() {
    local extras="$1"
    local packages=(${APT_PACKAGES:-})
    if ! venv_ok; then
        if [ -z "$PY" ]; then
            packages+=(python3 python3-venv)
        elif ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            # Debian ships ensurepip (needed by `python3 -m venv`) separately.
            packages+=(python3-venv)
        fi
    fi
    if [ "${#packages[@]}" -gt 0 ]; then
        echo "scripts: installing ${packages[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        local lock=(-o DPkg::Lock::Timeout=600)
        $SUDO apt-get "${lock[@]}" update -qq
        $SUDO apt-get "${lock[@]}" install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    fi
    if ! venv_ok; then
        [ -n "$PY" ] || PY="$(command -v python3)"
        echo "scripts: creating .venv with $("$PY" --version)" >&2
        "$PY" -m venv --clear .venv
    fi
    # Reinstall only when the dependencies (or the extras asked for) changed.
    local stamp=.venv/.mailbot-install
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)$extras"
    if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
        echo "scripts: pip install -e '.$extras'" >&2
        PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            .venv/bin/python -m pip install -q -e ".$extras"
        echo "$want" >>"$stamp"
    fi
}
