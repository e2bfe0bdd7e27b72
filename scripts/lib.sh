# Shared by the scripts: find cargo (rustup's may not be on a non-login shell's PATH).
if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then . "$HOME/.cargo/env"; fi
command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (rustup)" >&2; exit 1; }
