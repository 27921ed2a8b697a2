; Inno Setup script: a per-user installer of the PyInstaller bundle (not built on the Linux
; build machines; see the README). On Windows, first:
;   set CMAKE_ARGS=-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
;   pip wheel --no-binary llama-cpp-python llama-cpp-python==0.3.36 -w build\wheels\portable
;   pip install build\wheels\portable\*.whl . pyinstaller
;   pyinstaller --noconfirm --distpath build\dist installers\smallthinker.spec
; then: iscc installers\windows\smallthinker.iss
#define AppVersion "0.1.0"

[Setup]
AppId={{6B0F6C1E-8F2A-4C7E-9B1D-5A3E2C4D7F10}
AppName=SmallThinker Desktop
AppVersion={#AppVersion}
AppPublisher=SmallThinker Desktop
DefaultDirName={localappdata}\Programs\SmallThinker
DefaultGroupName=SmallThinker Desktop
PrivilegesRequired=lowest
OutputDir=..\..\build
OutputBaseFilename=SmallThinker-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible

[Files]
Source: "..\..\build\dist\SmallThinker\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\SmallThinker Desktop"; Filename: "{app}\smallthinker.exe"
Name: "{userdesktop}\SmallThinker Desktop"; Filename: "{app}\smallthinker.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\smallthinker.exe"; Parameters: "--self-test"; StatusMsg: "Checking the installation..."; Flags: runhidden waituntilterminated
Filename: "{app}\smallthinker.exe"; Description: "Start SmallThinker Desktop"; Flags: postinstall nowait skipifsilent
