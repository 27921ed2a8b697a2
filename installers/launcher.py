"""The frozen app's entry point (PyInstaller): the same `main()` as the `smallthinker` command."""

import sys

from ui.main import main

if __name__ == "__main__":
    sys.exit(main())
