#!/usr/bin/env bash
# macOS: an .app and a .dmg from the PyInstaller bundle (not built on the Linux build
# machines; see the README). Run on a Mac with Python 3.11+ and Xcode's command line tools.
# llama.cpp on Apple silicon uses its Metal and Accelerate defaults; for Intel Macs the
# portable CPU flags of installers/build_portable_llama.sh apply as on Linux.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv build/package-venv
build/package-venv/bin/pip install --quiet . "pyinstaller>=6.10"
build/package-venv/bin/pyinstaller --noconfirm --distpath build/dist --workpath build/pyinstaller \
    installers/smallthinker.spec
APP="build/dist/SmallThinker Desktop.app"
rm -rf "$APP"
mkdir -p "$APP/Contents/MacOS" "$APP/Contents/Resources"
cp -a build/dist/SmallThinker/. "$APP/Contents/MacOS/"
cat > "$APP/Contents/Info.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>CFBundleName</key><string>SmallThinker Desktop</string>
  <key>CFBundleIdentifier</key><string>app.smallthinker.desktop</string>
  <key>CFBundleExecutable</key><string>smallthinker</string>
  <key>CFBundleShortVersionString</key><string>0.1.0</string>
  <key>LSMinimumSystemVersion</key><string>12.0</string>
  <key>NSHighResolutionCapable</key><true/>
</dict></plist>
PLIST
"$APP/Contents/MacOS/smallthinker" --self-test
hdiutil create -volname "SmallThinker Desktop" -srcfolder "$APP" -ov -format UDZO build/SmallThinker-0.1.0.dmg
echo "built build/SmallThinker-0.1.0.dmg"
