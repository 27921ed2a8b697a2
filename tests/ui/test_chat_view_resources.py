"""The chat view loads no resource at all: a message (a model's answer, a summarised
document) can name /dev/zero, a FIFO, a share on another host or an image on disk (issue 17,
item 5: /dev/zero aborted the app, a FIFO froze it, and both came back with the conversation)."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage, QTextDocument

from ui.chat_view import ChatView

IMAGE = QTextDocument.ResourceType.ImageResource


def _image_shown(view: ChatView, url: str) -> QImage:
    resource = view.document().resource(IMAGE.value, QUrl(url))
    return resource if isinstance(resource, QImage) else QImage()


def test_an_image_on_disk_named_in_a_message_is_not_read(qtbot, tmp_path):
    real = tmp_path / "photo.png"
    image = QImage(50, 40, QImage.Format.Format_RGB32)
    image.fill(0xFF2040)
    assert image.save(str(real))
    view = ChatView()
    qtbot.addWidget(view)
    view.show_messages([("assistant", f"Look: ![a photo]({real}) and ![again](file://{real})")])
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    for url in (str(real), f"file://{real}"):
        assert _image_shown(view, url).size().width() <= 1  # the placeholder, never the 50x40 photo


def test_devices_and_other_hosts_are_never_opened(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    hostile = "![z](/dev/zero) ![s](file://fileserver/share/x.png) ![w](https://example.com/x.png)"
    view.show_messages([("assistant", hostile)])  # aborted the process with std::bad_alloc before
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    for url in ("/dev/zero", "file://fileserver/share/x.png", "https://example.com/x.png"):
        assert view.loadResource(IMAGE.value, QUrl(url)).size().width() == 1
    assert view.loadResource(QTextDocument.ResourceType.StyleSheetResource.value, QUrl("/etc/passwd")) == ""
