# `make run` and `make test` are all a newcomer needs: both create .venv when it is
# missing and (re)install the project when pyproject.toml (or the C it builds) changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint clean x11-packages screenshot screenshot-safe-mode screenshot-dialogs screenshot-server screenshot-memory package

$(INSTALLED): pyproject.toml setup.py installers/install_llama.py engine/experts/eval_filter.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama.cpp built for this CPU without its AMX kernels (they crash on these models), about
	# 5 minutes the first time; the wheel is kept per build option set and checked after install.
	$(PY) installers/install_llama.py
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/smallthinker

lint: $(INSTALLED)
	$(VENV)/bin/ruff check app engine ui tests bench
	$(VENV)/bin/ruff format --check app engine ui tests bench

test: $(INSTALLED) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# A real window on a virtual X server (Debian packages, installed when missing).
QT_X11_PACKAGES := xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0
# The screen size follows: "-screen 0 WxHx24". QT_QPA_PLATFORM=offscreen (the tests') must not leak in.
XVFB_RUN := env -u QT_QPA_PLATFORM xvfb-run -a -s
# Every screenshot target needs Xvfb and the X11 libraries Qt's xcb platform loads: installed where missing.
x11-packages:
	command -v xvfb-run >/dev/null && dpkg -s $(QT_X11_PACKAGES) >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq $(QT_X11_PACKAGES))

screenshot: $(INSTALLED) x11-packages
	$(XVFB_RUN) "-screen 0 1280x800x24" $(PY) docs/screenshot.py docs/main-window.png

# What a user sees where llama.cpp's fast kernels crash (light and dark), for review.
screenshot-safe-mode: $(INSTALLED) x11-packages
	for theme in light dark; do \
		$(XVFB_RUN) "-screen 0 1280x800x24" \
			$(PY) docs/screenshot.py build/screenshots/safe-mode-$$theme.png --theme $$theme --safe-mode; \
	done

# The window, its dialogs (settings, the database-recovery one, the model manager) and the
# summary card, light and dark, at scale factors 1 and 2 (a 2560x1600 screen for 2x); the
# README shows the light 1x conversation with code, the dark 2x one and the model manager.
screenshot-dialogs: $(INSTALLED) x11-packages
	for theme in light dark; do \
		$(XVFB_RUN) "-screen 0 1280x800x24" \
			$(PY) docs/screenshot.py build/screenshots/window-$$theme.png --theme $$theme --dialogs; \
		$(XVFB_RUN) "-screen 0 2560x1600x24" \
			$(PY) docs/screenshot.py build/screenshots/window-$$theme-2x.png --theme $$theme --scale 2; \
	done
	cp build/screenshots/window-dark-2x.png docs/main-window-dark-2x.png
	cp build/screenshots/window-light-models.png docs/model-manager.png

# The window with its local server on, caught answering an OpenAI client (the status bar).
screenshot-server: $(INSTALLED) x11-packages
	$(XVFB_RUN) "-screen 0 1280x800x24" \
		$(PY) docs/screenshot.py build/screenshots/server-answering.png --server

# The live memory panel and Settings > Memory, a synthetic 4B within 1.5 GiB, light and dark
# (docs/memory-*.png in the README are the light ones).
screenshot-memory: $(INSTALLED) x11-packages
	for theme in light dark; do \
		$(XVFB_RUN) "-screen 0 1280x900x24" \
			$(PY) docs/screenshot.py build/screenshots/memory-$$theme.png --theme $$theme --memory; \
	done
	cp build/screenshots/memory-light-live-panel.png docs/memory-live-panel.png
	cp build/screenshots/memory-light-memory-page.png docs/memory-page.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# The Linux bundle and .deb in build/ (installers/build_linux.sh; PORTABLE=0 skips the
# 20-30 minute portable llama.cpp build and bundles this machine's one).
package:
	PORTABLE=$(or $(PORTABLE),1) installers/build_linux.sh
