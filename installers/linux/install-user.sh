#!/usr/bin/env bash
# Put an unpacked bundle (build/dist/SmallThinker, or a copy) in the user's applications
# menu without root: ~/.local/opt/smallthinker, ~/.local/bin/smallthinker, a .desktop entry.
set -euo pipefail
BUNDLE=${1:-"$(dirname "$0")/../../build/dist/SmallThinker"}
PREFIX=${PREFIX:-$HOME/.local}
test -x "$BUNDLE/smallthinker" || { echo "no bundle at $BUNDLE (run make package first)" >&2; exit 1; }
mkdir -p "$PREFIX/opt" "$PREFIX/bin" "$PREFIX/share/applications" "$PREFIX/share/icons/hicolor/scalable/apps"
rm -rf "$PREFIX/opt/smallthinker"
cp -a "$BUNDLE" "$PREFIX/opt/smallthinker"
ln -sf "$PREFIX/opt/smallthinker/smallthinker" "$PREFIX/bin/smallthinker"
HERE=$(cd "$(dirname "$0")" && pwd)
sed "s|@BIN@|$PREFIX/opt/smallthinker/smallthinker|" "$HERE/smallthinker.desktop" \
    > "$PREFIX/share/applications/smallthinker.desktop"
cp "$PREFIX/opt/smallthinker/_internal/resources/icons/smallthinker.svg" \
    "$PREFIX/share/icons/hicolor/scalable/apps/smallthinker.svg"
command -v update-desktop-database >/dev/null && update-desktop-database "$PREFIX/share/applications" || true
echo "installed: $PREFIX/bin/smallthinker (and the applications menu)"
