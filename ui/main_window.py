"""The main window: conversations on the left, the chat on the right, live figures below."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.catalog import ModelCatalog
from app.chat_session import ChatSession
from app.conversations import ConversationStore, StoreError
from app.engine_settings import engine_config, sampling_params
from app.errors import AppError
from app.hardware import probe_hardware
from app.hf_token import REMOTE_KEY_ACCOUNT, SERVER_KEY_ACCOUNT, TokenStore
from app.installed_models import installed_models
from app.model_choice import recommend, speed_decides
from app.model_discovery import FoundModel
from app.paths import data_dir
from app.settings import Settings, SettingsError, save_settings
from app.speed.memory_plan import MemoryPlan, budget_speed
from app.status_text import answer_details, context_text, memory_text, speed_text
from engine.config import MemoryMode
from ui.appearance import apply_appearance
from ui.chat_view import ChatView, MessageInput
from ui.code_blocks import warm_up_lexers
from ui.conversation_actions import ConversationActions
from ui.conversation_dates import DATE_ROLE, DatedItemDelegate, full_date
from ui.download_worker import DownloadThread
from ui.edit_banner import EditBanner
from ui.engine_worker import REMOTE_MODE, AnswerDone, EngineThread, LoadedModel
from ui.first_run import FirstRunPage
from ui.live_panel import LivePanel
from ui.live_stats_source import LiveStatsSource
from ui.message_actions import MessageActions
from ui.model_actions import ModelActions, ModelFinder
from ui.model_manager import ModelManager
from ui.model_switcher import ModelSwitcher
from ui.search_box import SearchBox
from ui.server_control import ServerControl
from ui.settings_dialog import SettingsDialog
from ui.speed_planner import SpeedPlanner
from ui.summary_actions import SummaryActions
from ui.summary_card import SummaryCard


class MainWindow(ConversationActions, MessageActions, ModelActions, SummaryActions, QMainWindow):
    # Emitted on the GUI thread once the window has handled the worker's news.
    answer_streamed = Signal(str)
    answer_finished = Signal(object)  # AnswerDone, or None when the answer failed
    model_changed = Signal(object)  # LoadedModel, or None when loading failed
    summary_progressed = Signal(object)  # SummaryProgress
    summary_finished = Signal(object)  # SummaryResult (also when stopped), or None when it failed
    problem_shown = Signal(str)  # a message shown by show_problem

    def __init__(
        self,
        store: ConversationStore,
        settings: Settings,
        engine: EngineThread,
        downloads: DownloadThread | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("SmallThinker Desktop")
        self.setAcceptDrops(True)  # a document dropped is summarised, a GGUF file loaded
        self._fit_to_screen(1100, 720)
        self.store, self.settings, self.engine = store, settings, engine
        self.downloads = downloads or DownloadThread()
        self.catalog = ModelCatalog.load()
        self.tokens = TokenStore()
        self.remote_keys = TokenStore(REMOTE_KEY_ACCOUNT, "Server key")
        self.server = ServerControl(engine.worker.host, TokenStore(SERVER_KEY_ACCOUNT, "API key"), self)
        self.session = ChatSession(store, settings)
        self.conversation_id: int | None = None
        self.model: LoadedModel | None = None
        self.busy = False
        self.actions_by_name: dict[str, QAction] = {}
        # Per conversation: the last answer's (speed, its details, context used, context length).
        self._figures: dict[int | None, tuple[str, str, int, int]] = {}
        self.editing: int | None = None  # the message the next send replaces (as a new version)
        self.live_panel: LivePanel | None = None
        self.model_manager: ModelManager | None = None
        self.found_elsewhere: list[FoundModel] | None = None
        self.model_finder = ModelFinder()
        self.model_finder.found.connect(self._found_models)
        self._loading_name = ""
        self._build_widgets()
        self._build_actions()
        self._connect_worker()
        self.refresh_conversations()
        self._memory_timer = QTimer(self, interval=500, timeout=self._show_memory)
        self._memory_timer.start()
        self._apply_server(settings)
        self.refresh_models()
        self.model_finder.scan()  # SmallThinker files other apps downloaded join the list when found
        warm_up_lexers()

    def _fit_to_screen(self, width: int, height: int) -> None:
        """The preferred size, or 90% of the screen where that is less (a 2x scale factor halves
        the logical screen: the message box was off the bottom)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is not None:
            room = screen.availableGeometry()
            width, height = min(width, int(room.width() * 0.9)), min(height, int(room.height() * 0.9))
        self.resize(width, height)

    # --- layout ---------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.conversation_list = QListWidget()
        self.conversation_list.setAccessibleName("Conversations")
        self.conversation_list.setItemDelegate(DatedItemDelegate(self.conversation_list))
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # titles elide
        self.conversation_list.currentItemChanged.connect(self._conversation_chosen)
        # A click or Enter on a conversation means "continue it": typing goes to the message box.
        self.conversation_list.itemClicked.connect(lambda _item: self.input.setFocus())
        self.conversation_list.itemActivated.connect(lambda _item: self.input.setFocus())
        new_chat = QPushButton("New chat")
        new_chat.clicked.connect(self.new_chat)
        self.search_box = SearchBox(placeholderText="Search conversations", clearButtonEnabled=True)
        self.search_box.setToolTip("Search titles and messages (Ctrl+F); Esc clears")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.textChanged.connect(lambda _text: self.refresh_conversations())
        left = QWidget()
        left.setMinimumWidth(200)  # at 800x600 the list kept ~110 px and a horizontal scroll bar
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(new_chat)
        left_layout.addWidget(self.search_box)
        left_layout.addWidget(self.conversation_list)

        self.model_label = QLabel("No model loaded. Use File > Open GGUF file… to load one.")
        self.chat_view = ChatView()
        self.chat_view.code_copied.connect(
            lambda language: self.statusBar().showMessage(f"{language or 'Code'} block copied.", 3000)
        )
        self.input = MessageInput()
        self.input.submitted.connect(self.send)
        self.input.escape_pressed.connect(self.cancel_edit)
        self.edit_banner = EditBanner()
        self.edit_banner.cancelled.connect(self.cancel_edit)
        self.chat_view.action_requested.connect(self._message_action)
        self.chat_view.message_copied.connect(lambda: self.statusBar().showMessage("Message copied.", 3000))
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send or stop")
        self.send_button.clicked.connect(self._send_or_stop)
        row = QHBoxLayout()
        row.addWidget(self.input)
        row.addWidget(self.send_button)
        chat_panel = QWidget()
        chat_layout = QVBoxLayout(chat_panel)
        self.summary_card = SummaryCard()
        self.summary_card.stop_requested.connect(self.stop)
        chat_layout.addWidget(self.summary_card)
        chat_layout.addWidget(self.chat_view, stretch=1)
        chat_layout.addWidget(self.edit_banner)
        chat_layout.addLayout(row)
        models_dir = self.settings.models_path()
        probe = probe_hardware(models_dir)
        self.speed = SpeedPlanner(
            self.catalog,
            probe.total_ram_bytes,
            data_dir() / "machine-speed.json",
            lambda: self.settings.models_path(),
            data_dir() / "expert-usage",
        )
        self.speed.plan_ready.connect(self._plan_ready)
        self.first_run = FirstRunPage(self.catalog, probe, recommend(probe, self.catalog))
        if speed_decides(probe, self.catalog):  # the 21B in memory-budget mode is worth predicting here
            self.speed.refresh()
        self.first_run.download_requested.connect(self._download)
        # Direct: the worker's own thread is busy downloading; the call only sets an Event.
        self.first_run.cancel_requested.connect(
            self.downloads.worker.request_cancel, Qt.ConnectionType.DirectConnection
        )
        self.first_run.open_file_requested.connect(self._choose_model_file)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.first_run)
        self.pages.addWidget(chat_panel)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        top = QHBoxLayout()  # the model, and on the right whether the local server is answering
        self.model_switcher = ModelSwitcher()
        self.model_switcher.model_chosen.connect(self.load_model)
        self.model_switcher.open_requested.connect(self._choose_model_file)
        top.addWidget(self.model_switcher)
        top.addWidget(self.model_label, stretch=1)
        top.addWidget(self.server.label)
        right_layout.addLayout(top)
        right_layout.addWidget(self.pages, stretch=1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([260, 840])
        splitter.setCollapsible(0, False)
        self.setCentralWidget(splitter)

        self.speed_label, self.context_label, self.memory_label = QLabel(), QLabel(), QLabel()
        for label in (self.speed_label, self.context_label, self.memory_label):
            self.statusBar().addPermanentWidget(label)

    def _build_actions(self) -> None:
        def menu(title: str, entries) -> None:
            bar_menu = self.menuBar().addMenu(title)
            for text, shortcut, slot in entries:
                action = QAction(text, self, shortcut=QKeySequence(shortcut), triggered=slot)
                bar_menu.addAction(action)
                self.actions_by_name[text] = action

        menu(
            "&File",
            [
                ("Open GGUF file…", QKeySequence.StandardKey.Open, self._choose_model_file),
                ("Models…", "Ctrl+M", self.open_model_manager),
                ("Summarise document…", "Ctrl+Shift+S", self._choose_document),
                ("Settings…", "Ctrl+,", self._open_settings),
                ("Quit", QKeySequence.StandardKey.Quit, self.close),
            ],
        )
        menu(
            "&Conversation",
            [
                ("New chat", "Ctrl+N", self.new_chat),
                ("Search", "Ctrl+F", self.search_box.setFocus),
                ("Rename…", "F2", self._ask_rename),
                ("Delete…", "Del", self._ask_delete),
                ("Export to Markdown…", "Ctrl+Shift+E", self._ask_export),
                ("Section summaries", "Ctrl+Shift+U", self.show_part_summaries),
            ],
        )
        menu(
            "C&hat",
            [
                ("Stop", "Esc", self.stop),
                ("Regenerate the last answer", "Ctrl+R", lambda: self.regenerate()),
                ("Edit the last message", "Ctrl+E", lambda: self.start_edit()),
                ("Copy the last answer", "Ctrl+Shift+C", self.copy_last_answer),
                ("Copy the last code block", "Ctrl+Shift+K", self.copy_last_code_block),
            ],
        )
        menu("&View", [("Memory and speed", "Ctrl+Shift+M", self.show_live_panel)])
        menu("&Help", [("About SmallThinker Desktop", "", self._about)])
        self.actions_by_name["Stop"].setEnabled(False)  # nothing to stop yet (see _set_busy)

    def _connect_worker(self) -> None:
        downloads = self.downloads.worker
        downloads.progress.connect(self.first_run.show_progress)
        downloads.finished.connect(self._downloaded)
        downloads.cancelled.connect(self.first_run.show_message)
        downloads.failed.connect(self.first_run.show_message)
        worker = self.engine.worker
        worker.loaded.connect(self._model_loaded)
        worker.load_progress.connect(self._load_progress)
        worker.load_failed.connect(self._model_failed)
        worker.load_refused.connect(self._model_refused)
        worker.text_streamed.connect(self._answer_streamed)
        worker.speed_changed.connect(lambda rate: self.speed_label.setText(speed_text(rate)))
        worker.answer_done.connect(self._answer_done)
        worker.answer_failed.connect(self._answer_failed)
        worker.summary_progress.connect(self._summary_progress)
        worker.summary_done.connect(self._summary_done)
        worker.summary_failed.connect(self._summary_failed)
        worker.host_changed.connect(self.server.host_changed)

    # --- model ------------------------------------------------------------------------------------
    def _download(self, model_id: str) -> None:
        self.downloads.request_start.emit(
            self.catalog.get(model_id), str(self.settings.models_path()), self.tokens.load()
        )

    def _downloaded(self, path: str) -> None:
        self.first_run.show_message("Downloaded and verified. Loading the model…")
        self.load_model(path)

    def start_engine(self) -> None:
        """What the settings ask for: another server's model, or the local model last loaded."""
        settings = self.settings
        if settings.remote_enabled and settings.remote_url:
            self.use_remote()
        elif settings.model_path and Path(settings.model_path).is_file():
            self.load_model(settings.model_path)

    def use_remote(self) -> None:
        url = self.settings.remote_url
        self._loading_name = url
        self.model_label.setText(f"Connecting to {url}…")
        self.engine.request_remote.emit(
            url, self.remote_keys.load() or "", self.settings.remote_model, self.settings.context_length
        )

    def load_model(self, path: str) -> None:
        if self.settings.remote_enabled:  # a local model chosen: this computer answers again
            self.settings = self.session.settings = replace(self.settings, remote_enabled=False)
            self._save_settings(self.settings)
        self._loading_name = Path(path).name
        self.model_label.setText(f"Loading {self._loading_name}…")
        self.engine.request_load.emit(path, engine_config(self.settings))

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a SmallThinker GGUF file", "", "GGUF models (*.gguf)")
        if path:
            self.load_model(path)

    def _load_progress(self, percent: int) -> None:
        if self.model is None or self.model_label.text().startswith("Loading"):
            self.model_label.setText(f"Loading {self._loading_name}… {percent}%")

    def refresh_models(self) -> None:
        """The switcher's list: downloaded and folder models, and the file loaded last."""
        remote = self.model is not None and self.model.memory_mode == REMOTE_MODE
        self.model_switcher.setVisible(not remote)  # another server's model is named on the line itself
        self.model_switcher.show_models(self._installed(), self.local_model_path())
        self._fill_model_manager()

    def local_model_path(self) -> str | None:
        """The file of the model answering, when this computer's model answers."""
        remote = self.model is not None and self.model.memory_mode == REMOTE_MODE
        return self.model.path if self.model is not None and not remote else None

    def _installed(self):
        also = [Path(p) for p in (self.local_model_path(), self.settings.model_path) if p]
        return installed_models(self.settings.models_path(), self.catalog, also, self.found_elsewhere or [])

    def _show_model(self, model: LoadedModel) -> None:
        safe = " · safe mode (slower)" if model.kernel_note else ""
        if model.memory_mode == REMOTE_MODE:
            self.model_label.setText(f"{model.name} · answered by the server at {model.path}")
        else:
            self.model_label.setText(f"{model.name} · {model.memory_mode}{safe} · loaded in {model.load_seconds:.1f} s")
        self.model_label.setToolTip(model.kernel_note)

    def _model_loaded(self, model: LoadedModel) -> None:
        self.model = model
        self._show_model(model)
        self.refresh_models()
        if model.kernel_note:  # short: the status bar's right side holds the live figures
            self.statusBar().showMessage("Safe mode: see Settings.", 15000)
        self._figures.clear()  # another model: other speeds, another context
        self._show_figures(self.conversation_id)
        self.pages.setCurrentIndex(1)
        self.input.setFocus()  # typing is the next thing to do
        if model.memory_mode != REMOTE_MODE and model.path != self.settings.model_path:
            self.settings = self.session.settings = replace(self.settings, model_path=model.path)
            self._save_settings(self.settings)
        self.model_changed.emit(model)

    def _model_refused(self, message: str) -> None:
        """A file that failed its checks: the model loaded before is still there and answering."""
        current = self.model
        if current is not None:
            self._show_model(current)  # its line again, instead of "Loading …"
            message = f"{message} {current.name} is still loaded."
        self.show_problem("Model not changed", message)

    def _model_failed(self, message: str) -> None:
        self.model = None
        self.model_label.setText(f"The model could not be loaded: {message}")
        self.pages.setCurrentIndex(0)
        self.refresh_models()
        self.model_changed.emit(None)

    def show_live_panel(self) -> LivePanel:
        """The memory and speed plots beside the chat (made once, sampled only while shown)."""
        if self.live_panel is None:
            self.live_panel = LivePanel(LiveStatsSource(self.engine.worker.current_engine), self)
        self.live_panel.show()
        self.live_panel.raise_()
        return self.live_panel

    # --- settings ------------------------------------------------------------------------------------
    def _plan_ready(self, plan: MemoryPlan) -> None:
        """A new speed prediction: the first-run recommendation may change with it."""
        probe = self.first_run.probe
        self.first_run.set_recommendation(
            recommend(probe, self.catalog, budget_speed(plan, self.settings.min_usable_tps))
        )

    def _open_settings(self) -> None:
        dialog = SettingsDialog(
            self.settings,
            self.catalog,
            total_ram_bytes=self.first_run.probe.total_ram_bytes,
            token=self.tokens.load(),
            kernel_note=self.model.kernel_note if self.model is not None else "",
            server_key=self.server.keys.load(),
            server_url=self.server.base_url,
            remote_key=self.remote_keys.load(),
            plan=self.speed.plan,
            parent=self,
        )
        model_file = Path(self.local_model_path()) if self.local_model_path() else None
        links = [
            (self.speed.plan_ready, dialog.memory.set_plan),
            (self.speed.measuring, dialog.memory.set_measuring),
            (dialog.memory.measure_requested, lambda: self.speed.measure_disk(model_file)),
        ]
        for signal, slot in links:
            signal.connect(slot)
        if self.speed.plan is None:
            self.speed.refresh()
        accepted = dialog.exec()
        for signal, slot in links:
            signal.disconnect(slot)
        if accepted:
            self.apply_settings(
                dialog.values(),
                token=dialog.token_value(),
                server_key=dialog.server_key_value(),
                remote_key=dialog.remote_key_value(),
            )

    def _save_settings(self, settings: Settings) -> None:
        try:
            save_settings(settings)
        except SettingsError as exc:  # an unwritable config folder, a full disk: say so, keep going
            self.show_problem("Settings not saved", str(exc))

    def show_problem(self, title: str, message: str) -> None:
        """A problem the user should know about but that does not stop the app: a box that
        does not block (the window stays usable) and the status bar."""
        self.statusBar().showMessage(message, 30000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.problem_shown.emit(message)

    def apply_settings(
        self,
        new: Settings,
        *,
        token: str | None = None,
        server_key: str | None = None,
        remote_key: str | None = None,
        reload_now: bool | None = None,
    ) -> None:
        """Save and apply `new`. Changes that need the model loaded again do so when confirmed;
        turning "use another server" on or off switches at once."""
        old = self.settings
        if token is not None and token != (self.tokens.load() or ""):
            self.statusBar().showMessage(self.tokens.save(token), 8000)
        if server_key is not None and server_key != (self.server.keys.load() or ""):
            self.server.keys.save(server_key)
        remote_key_changed = remote_key is not None and remote_key != (self.remote_keys.load() or "")
        if remote_key_changed:
            self.remote_keys.save(remote_key)
        self.settings = self.session.settings = new
        self._save_settings(new)
        apply_appearance(new)
        self._apply_server(new)
        if old.remote_changed(new) or (new.remote_enabled and remote_key_changed):
            if self.busy:
                self.statusBar().showMessage("The server choice applies after this answer: open Settings again.", 8000)
            elif new.remote_enabled:
                self.use_remote()
            else:
                self._back_to_local()
            return
        if self.model is None or not old.needs_reload(new):
            return
        if reload_now is None:
            answer = QMessageBox.question(
                self, "Reload the model?", "These changes take effect when the model is loaded again. Reload now?"
            )
            reload_now = answer == QMessageBox.StandardButton.Yes
        if reload_now and not self.busy:
            self.load_model(self.model.path)
        else:
            self.statusBar().showMessage("The new model settings apply the next time the model loads.", 8000)

    def _back_to_local(self) -> None:
        """Another server no longer answers: the local model last loaded does, or the welcome page."""
        if self.settings.model_path and Path(self.settings.model_path).is_file():
            self.load_model(self.settings.model_path)
        else:
            self.model = None
            self.model_label.setText("No model loaded. Use File > Open GGUF file… to load one.")
            self.pages.setCurrentIndex(0)
            self.engine.request_unload.emit()
            self.model_changed.emit(None)

    def _apply_server(self, settings: Settings) -> None:
        try:
            news = self.server.apply(settings)
        except AppError as exc:
            self.show_problem("Local server", str(exc))
            return
        if news:
            self.statusBar().showMessage(news, 10000)

    # --- conversations ------------------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        self.conversation_list.blockSignals(True)
        self.conversation_list.clear()
        for conversation in self.store.list(self.search_box.text().strip()):
            item = QListWidgetItem(conversation.title)
            item.setToolTip(f"{conversation.title}\n{full_date(conversation.updated_at)}")
            item.setData(Qt.ItemDataRole.UserRole, conversation.id)
            item.setData(DATE_ROLE, conversation.updated_at)
            self.conversation_list.addItem(item)
            if conversation.id == self.conversation_id:
                self.conversation_list.setCurrentItem(item)
        self.conversation_list.blockSignals(False)

    def _conversation_chosen(self, item: QListWidgetItem | None) -> None:
        if item is None or self.busy:
            return
        self.conversation_id = item.data(Qt.ItemDataRole.UserRole)
        self.show_conversation(self.conversation_id)
        self._show_figures(self.conversation_id)
        if not self.conversation_list.hasFocus():  # arrowing through the list stays in the list
            self.input.setFocus()

    def show_conversation(self, conversation_id: int) -> None:
        """Draw a stored conversation; where the database is damaged, what can be read and why."""
        messages, damaged = self.session.shown(conversation_id)
        self.chat_view.show_messages(messages)
        if damaged:
            self.show_problem("Conversation damaged", damaged)

    def new_chat(self) -> None:
        if self.busy:
            return
        self.conversation_id = None
        # No current item either: clicking the conversation that was open then is a change of
        # the current item, so it is drawn again (a cleared selection alone left it blank).
        self.conversation_list.setCurrentRow(-1)
        self.chat_view.show_messages([])
        self._show_figures(None)
        self.input.setFocus()

    # --- chatting --------------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        if self.busy or not text.strip():
            return
        if self.model is None:
            self.statusBar().showMessage("Load a model first (File > Open GGUF file…).", 5000)
            self.input.setPlainText(text)
            return
        if self.editing is not None and self.conversation_id is not None:
            editing, self.editing = self.editing, None
            self.edit_banner.hide()
            self._answer(self.session.edit(self.conversation_id, editing, text))
            return
        shown = self.conversation_id
        try:
            pending = self.session.send(self.conversation_id, text)
        except StoreError as exc:  # a full disk: the message stays in the box, unsent
            self.input.setPlainText(text)
            self.show_problem("Message not sent", f"{exc}. Your message is still in the box; send it again later.")
            return
        if pending.conversation_id == shown:  # only the new message needs drawing
            self.chat_view.append_message(self.session.shown_last(shown, pending.user_message))
            self._answer(pending, redraw=False)
        else:
            self._answer(pending)

    def _answer(self, pending, *, redraw: bool = True) -> None:
        self.conversation_id = pending.conversation_id
        self.refresh_conversations()
        if redraw:
            self.show_conversation(self.conversation_id)
        self.chat_view.begin_answer()
        self._set_busy(True)
        self.engine.request_generate.emit(pending.messages, sampling_params(self.settings))

    def stop(self) -> None:
        if self.busy:
            self.engine.worker.request_stop()
            if self.summary_card.isVisible():
                self.summary_card.stopping()

    def _send_or_stop(self) -> None:
        if self.busy:
            self.stop()
        else:
            self.send(self.input.toPlainText())
            self.input.clear()

    def _answer_streamed(self, text: str) -> None:
        self.chat_view.append_answer(text)
        self.answer_streamed.emit(text)

    def _answer_done(self, done: AnswerDone) -> None:
        saved = None
        try:
            saved = self.session.answer_finished(
                self.conversation_id, done.text, complete=done.finish_reason != "cancelled"
            )
        except StoreError as exc:  # shown, kept, saved before the next message (or exported)
            self.show_problem(
                "Answer not saved",
                f"{exc}. The answer stays on screen and is saved as soon as there is room; "
                "Conversation > Export keeps it too.",
            )
        self.chat_view.end_answer(self.session.shown_last(self.conversation_id, saved) if saved else None)
        stats = done.stats
        if self.model is not None and self.model.memory_mode == MemoryMode.IN_MEMORY.value:
            self.speed.record_answer(Path(self.model.path), stats.decode_tokens_per_second, stats.tokens_out)
        self._figures[self.conversation_id] = (
            speed_text(stats.decode_tokens_per_second),
            answer_details(stats),
            stats.context_used,
            stats.context_length,
        )
        self._show_figures(self.conversation_id)
        if done.notice:
            self.statusBar().showMessage(done.notice, 10000)
        self._set_busy(False)
        self.answer_finished.emit(done)

    def _answer_failed(self, message: str) -> None:
        self.chat_view.end_answer()
        self.statusBar().showMessage(message, 15000)
        self._set_busy(False)
        self.answer_finished.emit(None)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.send_button.setText("Stop" if busy else "Send")
        # Disabled when idle, Stop's Esc also reaches the search box (which it then clears).
        self.actions_by_name["Stop"].setEnabled(busy)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About SmallThinker Desktop",
            "<b>SmallThinker Desktop</b><br>Chat with the SmallThinker models on this computer's CPU: "
            "offline and private.<br><br>Models by PowerInfer (SmallThinker-4B-A0.6B, SmallThinker-21B-A3B); "
            "inference by llama.cpp through llama-cpp-python; the window by Qt for Python.",
        )

    def _show_figures(self, conversation_id: int | None) -> None:
        """The speed and context of this conversation's last answer (each conversation its own)."""
        speed, details, used, length = self._figures.get(conversation_id, ("", "", 0, 0))
        self.speed_label.setText(speed)
        self.speed_label.setToolTip(details)
        length = length or (self.model.context_length if self.model is not None else 0)
        text, tip = context_text(used, length) if length else ("", "")
        self.context_label.setText(text)
        self.context_label.setToolTip(tip)

    def _show_memory(self) -> None:
        report = self.engine.worker.memory_report()
        if report is None:
            self.memory_label.setText("")
            self.memory_label.setToolTip("")
            return
        text, tip = memory_text(report)
        self.memory_label.setText(text)
        self.memory_label.setToolTip(tip)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self._memory_timer.stop()
        if self.live_panel is not None:
            self.live_panel.source.stop()  # its sampler reads the engine about to close
        self.server.stop()
        self.downloads.stop()
        self.engine.stop()
        super().closeEvent(event)
