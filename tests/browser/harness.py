"""Render an Adaptive Card with Microsoft's JavaScript renderer in headless Chromium, fill it in, submit it.

What a person would do in Teams, minus Teams: ``page.html`` (served from 127.0.0.1) renders the card
with the npm package ``adaptivecards``; Playwright fills inputs by their card ids and clicks an action
button; the renderer validates the inputs (required, regex) exactly as it would for a user and, if
they pass, hands the ``Action.Submit`` data to the page, which this module returns.

Needs Debian's ``/usr/bin/chromium`` (never a downloaded browser), ``tests/browser/node_modules`` and
the ``playwright`` PyPI package: ``.ci/install-browser-deps.sh`` installs the first two. Use
:func:`browser_available` to skip cleanly when they are missing.

Reuse::

    with CardBrowser() as browser:              # one Chromium for many cards
        data = browser.render_fill_submit(card, {"compute_instance": "ci-1", ...}, "Request exemption")
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

BROWSER_DIR = Path(__file__).resolve().parent
RENDERER_JS = BROWSER_DIR / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
# Microsoft's published Teams host configs (npm adaptivecards-designer, installed with the renderer).
HOST_CONFIG_DIR = BROWSER_DIR / "node_modules" / "adaptivecards-designer" / "lib" / "hostConfigs"
TEAMS_THEMES = ("light", "dark")


def teams_host_config(theme: str) -> Optional[Dict[str, Any]]:
    """Microsoft's ``microsoft-teams-<theme>.json`` host config, or None when adaptivecards-designer is not installed."""
    import json

    path = HOST_CONFIG_DIR / f"microsoft-teams-{theme}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
CHROMIUM = os.environ.get("CI_GOVERNANCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000
_SERVED = ("/page.html", "/node_modules/adaptivecards/dist/")


class HarnessError(Exception):
    """The card could not be rendered or driven (renderer warnings, unknown input id, missing button, page error)."""


class SubmissionBlocked(HarnessError):
    """The renderer refused to submit: some inputs failed its validation (required or regex)."""

    def __init__(self, invalid_inputs: List[str]):
        self.invalid_inputs = invalid_inputs
        super().__init__(f"the renderer blocked the submission; invalid inputs: {invalid_inputs}")


def browser_available() -> Tuple[bool, str]:
    """(True, "") when the browser tests can run, else (False, why not)."""
    if importlib.util.find_spec("playwright") is None:
        return False, "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    if not os.access(CHROMIUM, os.X_OK):
        return False, f"Chromium is missing at {CHROMIUM} (run .ci/install-browser-deps.sh: apt-get install chromium)"
    if not RENDERER_JS.is_file():
        return False, f"{RENDERER_JS.relative_to(BROWSER_DIR.parent.parent)} is missing (run .ci/install-browser-deps.sh: npm ci in tests/browser)"
    return True, ""


class _Handler(SimpleHTTPRequestHandler):
    """Serves only the page and the renderer's bundle, quietly."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/page.html" or path.startswith(_SERVED[1]):
            super().do_GET()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        pass


class _PageServer:
    """A stdlib HTTP server on 127.0.0.1 (ephemeral port) in a daemon thread."""

    def __init__(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(BROWSER_DIR)))
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="card-page-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _css_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CardBrowser:
    """One headless Chromium and one page server, reused for many cards (starting Chromium is the slow part)."""

    def __init__(self, executable_path: str = CHROMIUM):
        ok, reason = browser_available()
        if not ok:
            raise HarnessError(reason)
        from playwright.sync_api import sync_playwright

        self._server = _PageServer()
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=executable_path, headless=True, args=CHROMIUM_ARGS)
        except Exception:
            self._playwright.stop()
            self._server.close()
            raise
        self._page: Any = None
        self._rendered = False
        self._errors: List[str] = []

    def __enter__(self) -> CardBrowser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop Chromium and the page server."""
        try:
            self._browser.close()
        finally:
            self._playwright.stop()
            self._server.close()

    def _open_page(self) -> Any:
        # One page for all cards: renderCard() starts afresh each time, and a new page costs seconds on a small machine.
        if self._page is None:
            page = self._browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: self._errors.append(str(exc)))
            # Nothing but our page server: a card that references the internet must not reach it.
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(self._server.base + "/") else route.abort())
            page.goto(f"{self._server.base}/page.html")
            page.wait_for_function("typeof AdaptiveCards !== 'undefined' && typeof window.renderCard === 'function'")
            self._page = page
        return self._page

    def render(self, card: Dict[str, Any], host_config: Optional[Dict[str, Any]] = None, width: Optional[int] = None) -> Dict[str, Any]:
        """Render ``card`` (replacing the previous one), with ``host_config`` (default: the page's small Teams-like one) in a
        card ``width`` px wide; returns {"inputs": [ids]}. Raises HarnessError on renderer warnings or page errors."""
        page = self._open_page()
        self._errors = []
        self._rendered = False
        page.evaluate("w => { const c = document.getElementById('card'); c.style.maxWidth = c.style.width = w ? w + 'px' : ''; }", width)
        result = page.evaluate("([card, config]) => window.renderCard(card, config)", [card, host_config])
        problems = self._errors + list(result["parseErrors"])
        if problems:
            raise HarnessError(f"the renderer reported: {problems}")
        self._rendered = True
        return {"inputs": result["inputs"]}

    def fill(self, values: Dict[str, str]) -> None:
        """Fill inputs by card id, as a user would (dates as YYYY-MM-DD, times as HH:MM, choices by value)."""
        page = self._require_page()
        page.evaluate("window.tagInputs()")
        for input_id, value in values.items():
            control = page.locator(f"[data-ac-id={_css_string(input_id)}]")
            if control.count() != 1:
                raise HarnessError(f"no input with id {input_id!r} in the rendered card")
            kind = control.evaluate("el => el.tagName.toLowerCase() + ':' + (el.type || '')")
            if kind.startswith("select:"):
                control.select_option(value=value)
            elif kind == "input:checkbox":
                control.set_checked(value.lower() == "true")
            elif kind.startswith(("input:", "textarea:")):
                control.fill(value)
            elif kind.startswith("div:") and control.locator("input[type=text]").count() == 1:
                # Input.ChoiceSet "filtered" (typeahead): a text box whose text is matched against the choice titles.
                title = page.evaluate(
                    "([id, v]) => { const i = window.__card.getAllInputs().find(x => x.id === id);"
                    " const c = (i.choices || []).find(c => c.value === v); return c ? c.title : v; }",
                    [input_id, value],
                )
                control.locator("input[type=text]").fill(title)
            else:
                raise HarnessError(f"input {input_id!r} renders as {kind!r}, which this harness cannot fill")

    def submit(self, action_title: str) -> Dict[str, Any]:
        """Click the action button ``action_title``; returns the submitted data, or raises SubmissionBlocked."""
        page = self._require_page()
        button = page.get_by_role("button", name=action_title, exact=True)
        if button.count() != 1:
            titles = page.eval_on_selector_all("button", "bs => bs.map(b => b.textContent)")
            raise HarnessError(f"expected one button {action_title!r}, found {button.count()}; buttons: {titles}")
        button.click()
        if self._errors:
            raise HarnessError(f"page error after clicking {action_title!r}: {self._errors}")
        submitted = page.evaluate("window.__submitted")
        if not submitted:
            raise SubmissionBlocked(page.evaluate("window.invalidInputs()"))
        return submitted[-1]["data"]

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the card's page (for assertions on page state)."""
        return self._require_page().evaluate(expression)

    def horizontal_overflow(self) -> List[Dict[str, Any]]:
        """Elements of the rendered card that stick out sideways (empty: it fits its width)."""
        return self._require_page().evaluate("window.horizontalOverflow()")

    def card_png(self, path: str) -> None:
        """Save a PNG of the rendered card alone."""
        self._require_page().locator("#card").screenshot(path=path)

    def card_html(self) -> str:
        """The rendered card's HTML (the renderer sets its styles inline)."""
        return self._require_page().evaluate("document.getElementById('card').outerHTML")

    def visible_text(self) -> str:
        """The rendered card's text as a user sees it (innerText)."""
        return self._require_page().inner_text("#card")

    def screenshot(self, path: str) -> None:
        """Save a PNG of the page as it is now (to look at a card as a person would)."""
        self._require_page().screenshot(path=path, full_page=True)

    def render_fill_submit(self, card: Dict[str, Any], values: Dict[str, str], action_title: str, *, screenshot: Optional[str] = None) -> Dict[str, Any]:
        """Render ``card``, fill ``values`` (input id -> value), click ``action_title``; returns the submitted data."""
        self.render(card)
        self.fill(values)
        try:
            return self.submit(action_title)
        finally:
            if screenshot:
                self.screenshot(screenshot)

    def _require_page(self) -> Any:
        if self._page is None or not self._rendered:
            raise HarnessError("render a card first")
        return self._page


def render_fill_submit(
    card: Dict[str, Any], values: Dict[str, str], action_title: str, *, browser: Optional[CardBrowser] = None, screenshot: Optional[str] = None
) -> Dict[str, Any]:
    """Render ``card`` in headless Chromium, fill ``values`` by input id, click ``action_title``, return the submitted data.

    Raises SubmissionBlocked when the renderer's validation refuses the submission, HarnessError
    for anything else. Pass a :class:`CardBrowser` to reuse one browser across calls.
    """
    if browser is not None:
        return browser.render_fill_submit(card, values, action_title, screenshot=screenshot)
    with CardBrowser() as own:
        return own.render_fill_submit(card, values, action_title, screenshot=screenshot)
