#!/usr/bin/env bash
# `make package`: the Linux bundle (PyInstaller, one folder) and a .deb.
#   build/dist/SmallThinker/smallthinker      the app (also: --self-test, CLI subcommands)
#   build/smallthinker-desktop_VERSION_amd64.deb
# PORTABLE=0 bundles llama-cpp-python built for this CPU (the same checked, AMX-free wheel
# `make` installs) instead of the portable build (which takes 20-30 minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=build/package-venv
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "${PORTABLE:-1}" = 1 ]; then
    PYTHON="$VENV/bin/python" installers/build_portable_llama.sh
    "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps build/wheels/portable/llama_cpp_python-*.whl
else
    "$VENV/bin/python" installers/install_llama.py
fi
"$VENV/bin/python" -m pip install --quiet . "pyinstaller>=6.10"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath build/dist --workpath build/pyinstaller installers/smallthinker.spec
echo "bundle: build/dist/SmallThinker ($(du -sh build/dist/SmallThinker | cut -f1))"

# .deb: the bundle under /opt, a launcher in /usr/bin, the menu entry and the icon.
DEB=build/deb
rm -rf "$DEB"
mkdir -p "$DEB/DEBIAN" "$DEB/opt" "$DEB/usr/bin" "$DEB/usr/share/applications" \
    "$DEB/usr/share/icons/hicolor/scalable/apps"
cp -a build/dist/SmallThinker "$DEB/opt/smallthinker"
ln -s /opt/smallthinker/smallthinker "$DEB/usr/bin/smallthinker"
sed "s|@BIN@|/opt/smallthinker/smallthinker|" installers/linux/smallthinker.desktop \
    > "$DEB/usr/share/applications/smallthinker.desktop"
cp resources/icons/smallthinker.svg "$DEB/usr/share/icons/hicolor/scalable/apps/smallthinker.svg"
cat > "$DEB/DEBIAN/control" <<CONTROL
Package: smallthinker-desktop
Version: $VERSION
Section: utils
Priority: optional
Architecture: amd64
Maintainer: SmallThinker Desktop <noreply@example.invalid>
Installed-Size: $(du -sk "$DEB" | cut -f1)
Depends: libc6, libgl1, libegl1, libxkbcommon0, libfontconfig1, libdbus-1-3
Description: Local chat with the SmallThinker language models
 Runs SmallThinker-4B and 21B on the CPU, offline, within a memory budget.
CONTROL
dpkg-deb --root-owner-group --build "$DEB" "build/smallthinker-desktop_${VERSION}_amd64.deb" >/dev/null
echo "deb: build/smallthinker-desktop_${VERSION}_amd64.deb ($(du -h build/smallthinker-desktop_${VERSION}_amd64.deb | cut -f1))"
