"""The settings dialog. It edits a copy; the window applies the result (see MainWindow.apply_settings)."""

from __future__ import annotations

import secrets
from dataclasses import fields, replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.catalog import ModelCatalog
from app.model_choice import budget_platform_note, kv_cache_summary
from app.settings import KV_TYPES, THEMES, Settings
from app.speed.memory_plan import MemoryPlan
from ui.memory_page import MemoryPage

_BOUNDS = {f.name: f.metadata.get("bounds") for f in fields(Settings)}


def _spin(name: str, value: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(*_BOUNDS[name])
    box.setValue(value)
    box.setSuffix(suffix)
    box.setAccessibleName(name.replace("_", " "))
    return box


def _double(name: str, value: float, step: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(*_BOUNDS[name])
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    box.setAccessibleName(name.replace("_", " "))
    return box


def _stacked(control: QWidget, note: QLabel) -> QWidget:
    """A control with its explanation under it, as one form field."""
    box = QVBoxLayout()
    box.addWidget(control)
    box.addWidget(note)
    widget = QWidget()
    widget.setLayout(box)
    return widget


# One line each under the controls whose meaning is not obvious (and as their tooltips).
EXPLANATIONS = {
    "temperature": "How adventurous the wording is: 0 always takes the likeliest word; 0.6 is the models' own advice.",
    "top_p": "Words are drawn from the likeliest ones that together make this share (0.95 drops the odd tail).",
    "top_k": "At most this many candidate words at each step (0: no limit).",
    "max_tokens": "The longest an answer may grow; a token is about three quarters of a word.",
    "system_prompt": "Instructions the model reads before every conversation.",
    "threads": "Processor cores working on answers; automatic uses every physical core.",
    "context_length": "How much of a conversation the model sees at once; longer takes more memory.",
    "font_size": "The size of all text, the conversation's included.",
}


def _explained(control: QWidget, name: str) -> QWidget:
    """`control` with its one-line explanation under it, in the placeholder text's muted colour."""
    note = QLabel(EXPLANATIONS[name])
    note.setWordWrap(True)
    note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    note.setMinimumHeight(note.fontMetrics().lineSpacing() * 2 + 2)  # room for a wrapped second line
    note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    note.setObjectName(f"explains-{name}")
    control.setToolTip(EXPLANATIONS[name])
    box = QVBoxLayout()
    box.setContentsMargins(0, 0, 0, 4)
    box.setSpacing(1)
    box.addWidget(control)
    box.addWidget(note)
    widget = QWidget()
    widget.setLayout(box)
    return widget


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def _row(layout: QHBoxLayout) -> QWidget:
    widget = QWidget()
    widget.setLayout(layout)
    return widget


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: Settings,
        catalog: ModelCatalog,
        *,
        total_ram_bytes: int,
        token: str | None,
        kernel_note: str = "",
        server_key: str | None = None,
        server_url: str | None = None,
        remote_key: str | None = None,
        plan: MemoryPlan | None = None,
        parent=None,
    ) -> None:
        """`plan`: the speed prediction as far as it is known; the window sends newer ones to
        `self.memory.set_plan` and acts on `self.memory.measure_requested`."""
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.catalog = catalog
        self.threads = _spin("threads", settings.threads)
        self.threads.setSpecialValueText("automatic")
        self.context_length = _spin("context_length", settings.context_length, " tokens")
        self.context_length.setSingleStep(1024)
        self.temperature = _double("temperature", settings.temperature, 0.05)
        self.top_p = _double("top_p", settings.top_p, 0.05)
        self.top_k = _spin("top_k", settings.top_k)
        self.max_tokens = _spin("max_tokens", settings.max_tokens)
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setAccessibleName("system prompt")
        self.system_prompt.setMaximumHeight(80)
        self.memory = MemoryPage(
            settings.memory_budget_gib, total_ram_bytes, settings.min_usable_tps, catalog, budget_platform_note()
        )
        if plan is not None:
            self.memory.set_plan(plan)
        self.kv_type = self._combo(KV_TYPES, settings.kv_cache_type, "KV cache type")
        self.kv_label = QLabel()  # what each type costs at the context length chosen above
        self.kv_label.setWordWrap(True)
        self.context_length.valueChanged.connect(self._show_kv_cost)
        self._show_kv_cost(self.context_length.value())
        self.theme = self._combo(THEMES, settings.theme, "theme")
        self.font_size = _spin("font_size", settings.font_size, " pt")
        self.models_dir = QLineEdit(settings.models_dir, placeholderText="the default folder")
        self.models_dir.setAccessibleName("models folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.token = QLineEdit(token or "", echoMode=QLineEdit.EchoMode.Password, placeholderText="hf_…")
        self.token.setAccessibleName("Hugging Face token")
        # Said where people look for speed: the app chose slower kernels because the fast ones
        # crashed. One line (a wrapped label is cut off in this form); the reason as a tooltip.
        safe_mode = "Safe mode (slower): the fast kernels crashed on this processor."
        self.kernel_label = QLabel(safe_mode if kernel_note else "")
        self.kernel_label.setToolTip(kernel_note)
        self.kernel_label.setAccessibleName("processor note")
        self.kernel_label.setAccessibleDescription(kernel_note)
        self._build_server_controls(settings, server_key, server_url)
        self._build_remote_controls(settings, remote_key)
        self._build_layout(browse)
        # A form row does not grow with a wrapped label's text (a top-level window ignores
        # height-for-width): room for the lines they take in a dialog this wide.
        self.kv_label.setMinimumHeight(self.kv_label.fontMetrics().lineSpacing() * 4 + 4)
        self.setMinimumWidth(760)

    def _combo(self, choices: tuple[str, ...], current: str, name: str) -> QComboBox:
        box = QComboBox()
        box.addItems(list(choices))
        box.setCurrentText(current)
        box.setAccessibleName(name)
        return box

    def _build_server_controls(self, settings: Settings, key: str | None, running_url: str | None) -> None:
        self.server_enabled = QCheckBox("Serve the loaded model to other apps (OpenAI-compatible API)")
        self.server_enabled.setChecked(settings.server_enabled)
        self.server_port = _spin("server_port", settings.server_port)
        self.server_network = QCheckBox("Also accept connections from other computers (needs the API key)")
        self.server_network.setChecked(settings.server_on_network)
        self.server_key = QLineEdit(key or "", echoMode=QLineEdit.EchoMode.Password)
        self.server_key.setPlaceholderText("optional on this computer")
        self.server_key.setAccessibleName("server API key")
        self.new_key = QPushButton("New key")
        self.new_key.clicked.connect(lambda: self.server_key.setText(secrets.token_urlsafe(24)))
        self.copy_key = QPushButton("Copy key")
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.server_key.text()))
        self.server_url = QLabel()
        self.server_url.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_url = QPushButton("Copy base URL")
        self.copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.base_url()))
        self.server_note = QLabel()
        self.server_note.setWordWrap(True)
        self._running_url = running_url
        for signal in (self.server_port.valueChanged, self.server_enabled.toggled, self.server_network.toggled):
            signal.connect(self._show_server)
        self._show_server()

    def _build_remote_controls(self, settings: Settings, key: str | None) -> None:
        self.remote_enabled = QCheckBox("Answer with another server's model instead of this computer's")
        self.remote_enabled.setChecked(settings.remote_enabled)
        self.remote_url = QLineEdit(settings.remote_url, placeholderText="http://192.168.1.20:8321/v1")
        self.remote_url.setAccessibleName("remote server address")
        self.remote_model = QLineEdit(settings.remote_model, placeholderText="the first model it lists")
        self.remote_model.setAccessibleName("remote model")
        self.remote_key = QLineEdit(key or "", echoMode=QLineEdit.EchoMode.Password)
        self.remote_key.setPlaceholderText("if the server asks for one")
        self.remote_key.setAccessibleName("remote server API key")
        self.remote_note = QLabel(
            "Any OpenAI-compatible server: llama.cpp's, vLLM, or SmallThinker Desktop on another computer. "
            "The chat, Regenerate, Stop and summaries then run there."
        )
        self.remote_note.setWordWrap(True)

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port.value()}/v1"

    def _show_server(self, *_args) -> None:
        self.server_url.setText(self.base_url())
        if not self.server_enabled.isChecked():
            note = "Off. When on, editors, scripts and agents can use the loaded model at this address."
        elif self._running_url == self.base_url():
            note = "Running. Clients use this base URL and the model name the server lists (GET /v1/models)."
        else:
            note = "Starts when you press OK. Clients use this base URL and the model name it lists."
        if self.server_network.isChecked():
            note += " Other computers use this computer's network address instead of 127.0.0.1."
        self.server_note.setText(note)

    def _build_layout(self, browse: QPushButton) -> None:
        reload_note = " (reloads the model)"
        answers = QFormLayout()
        answers.addRow("Temperature", _explained(self.temperature, "temperature"))
        answers.addRow("Top-p", _explained(self.top_p, "top_p"))
        answers.addRow("Top-k", _explained(self.top_k, "top_k"))
        answers.addRow("Max tokens per answer", _explained(self.max_tokens, "max_tokens"))
        answers.addRow("System prompt", _explained(self.system_prompt, "system_prompt"))
        model = QFormLayout()
        model.addRow("Threads" + reload_note, _explained(self.threads, "threads"))
        model.addRow("Context length" + reload_note, _explained(self.context_length, "context_length"))
        model.addRow("KV cache type" + reload_note, _stacked(self.kv_type, self.kv_label))
        if self.kernel_label.text():
            model.addRow("Processor", self.kernel_label)
        folder = QHBoxLayout()
        folder.addWidget(self.models_dir)
        folder.addWidget(browse)
        model.addRow("Models folder", _row(folder))
        account = QFormLayout()
        account.addRow("Hugging Face token (kept in the system keyring)", self.token)
        token_note = QLabel(
            "Only needed for models that ask you to accept their terms on huggingface.co; SmallThinker's do not."
        )
        token_note.setWordWrap(True)
        account.addRow(token_note)
        appearance = QFormLayout()
        appearance.addRow("Theme", self.theme)
        appearance.addRow("Font size", _explained(self.font_size, "font_size"))
        server = QFormLayout()
        server.addRow(self.server_enabled)
        server.addRow("Port", self.server_port)
        server.addRow(self.server_network)
        key_row = QHBoxLayout()
        key_row.addWidget(self.server_key, stretch=1)
        key_row.addWidget(self.new_key)
        key_row.addWidget(self.copy_key)
        server.addRow("API key (kept in the system keyring)", _row(key_row))
        url_row = QHBoxLayout()
        url_row.addWidget(self.server_url, stretch=1)
        url_row.addWidget(self.copy_url)
        server.addRow("Base URL", _row(url_row))
        server.addRow(self.server_note)
        server.addRow(_separator())
        server.addRow(self.remote_enabled)
        server.addRow("Server address", self.remote_url)
        server.addRow("Model", self.remote_model)
        server.addRow("Its API key (kept in the system keyring)", self.remote_key)
        server.addRow(self.remote_note)
        self.tabs = QTabWidget()
        for title, form in (
            ("Chat", answers),
            ("Model", model),
            ("Memory", None),
            ("Appearance", appearance),
            ("Account", account),
            ("Server", server),
        ):
            if form is None:
                self.tabs.addTab(self.memory, title)
                continue
            page = QWidget()
            page.setLayout(form)
            self.tabs.addTab(page, title)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.reset_button = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        self.reset_button.setText("Reset to defaults")
        self.reset_button.setToolTip("Every setting back to its default; the model, its folder and the keys stay")
        self.reset_button.clicked.connect(self.reset_to_defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    def accept(self) -> None:
        if self.server_enabled.isChecked() and self.server_network.isChecked() and not self.server_key_value():
            self._refuse(
                self.server_note,
                self.server_key,
                "Set an API key (New key) before accepting connections from other computers: "
                "without one, anyone on the network could use the model.",
            )
            return
        if self.remote_enabled.isChecked() and not self.remote_url.text().strip():
            self._refuse(self.remote_note, self.remote_url, "Enter the server's address, e.g. http://host:8321/v1.")
            return
        super().accept()

    def _refuse(self, note: QLabel, field: QWidget, message: str) -> None:
        self.tabs.setCurrentIndex(self.tabs.count() - 1)  # the Server tab
        note.setText(message)
        field.setFocus()

    def _show_kv_cost(self, n_ctx: int) -> None:
        self.kv_label.setText(kv_cache_summary(n_ctx, self.catalog))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if folder:
            self.models_dir.setText(folder)

    def reset_to_defaults(self) -> None:
        """Every control to the default (applied on OK like any change); which model is used,
        where models live and the keys are not settings one resets by accident."""
        d = Settings()
        self.threads.setValue(d.threads)
        self.context_length.setValue(d.context_length)
        self.temperature.setValue(d.temperature)
        self.top_p.setValue(d.top_p)
        self.top_k.setValue(d.top_k)
        self.max_tokens.setValue(d.max_tokens)
        self.system_prompt.setPlainText(d.system_prompt)
        self.memory.set_budget_gib(d.memory_budget_gib)
        self.memory.min_tps.setValue(d.min_usable_tps)
        self.kv_type.setCurrentText(d.kv_cache_type)
        self.theme.setCurrentText(d.theme)
        self.font_size.setValue(d.font_size)
        self.server_enabled.setChecked(d.server_enabled)
        self.server_port.setValue(d.server_port)
        self.server_network.setChecked(d.server_on_network)
        self.remote_enabled.setChecked(d.remote_enabled)

    def values(self) -> Settings:
        return replace(
            self.settings,
            threads=self.threads.value(),
            context_length=self.context_length.value(),
            temperature=round(self.temperature.value(), 2),
            top_p=round(self.top_p.value(), 2),
            top_k=self.top_k.value(),
            max_tokens=self.max_tokens.value(),
            system_prompt=self.system_prompt.toPlainText(),
            memory_budget_gib=self.memory.budget_gib(),
            min_usable_tps=round(self.memory.min_tps.value(), 1),
            kv_cache_type=self.kv_type.currentText(),
            theme=self.theme.currentText(),
            font_size=self.font_size.value(),
            models_dir=self.models_dir.text().strip(),
            server_enabled=self.server_enabled.isChecked(),
            server_port=self.server_port.value(),
            server_on_network=self.server_network.isChecked(),
            remote_enabled=self.remote_enabled.isChecked(),
            remote_url=self.remote_url.text().strip(),
            remote_model=self.remote_model.text().strip(),
        ).checked()

    def token_value(self) -> str:
        return self.token.text().strip()

    def server_key_value(self) -> str:
        return self.server_key.text().strip()

    def remote_key_value(self) -> str:
        return self.remote_key.text().strip()
