"""Windows, widgets and the composition root. The only package that imports PySide6."""
