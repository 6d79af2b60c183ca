"""The chat page in a real browser: `rag ui` started as a user starts it (the installed entry point, a
real Streamlit server on 127.0.0.1), driven by headless Chromium through Selenium.

Needs the Debian packages `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver);
`.ci/run` installs them. Without them the module is skipped on a developer machine, and fails in CI.
Screenshots land in test-artifacts/ (gitignored) for a human to look at."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import ROOT, SEEDS, cli_env, free_port
from tests.test_ui import NEWS_QUESTION, news_site

__all__ = ["news_site"]  # the fixture: a real HTTP news site with an RSS feed

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RAG = Path(sys.executable).with_name("rag")
ARTIFACTS = ROOT / "test-artifacts"
STARTUP_SECONDS = 120
ANSWER_SECONDS = 120
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
]

QUESTION = "Who is the Secretary General of the CSTO?"
INJECTION_QUESTION = "Who did the harbour authority appoint as chief inspector?"
HOSTILE = (
    '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned=2"> <h1 id="injected">BIG</h1> '
    "**bold** and [link](javascript:window.__pwned=3) <style>body{display:none}</style>"
)
INJECTED_ARTICLE = f"""date 2021-03-02
Port news from the coast

The harbour authority appointed Mirela Vasquez as chief inspector on Tuesday. {HOSTILE}

Vasquez previously led the port's safety division for six years.
"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} not found: install the Debian packages chromium and chromium-driver to run the browser tests",
)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (`rag ui` execs Streamlit in the same process)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, read from /proc/net/tcp and tcp6."""
    found = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            assert len(address) == width
            # the kernel prints each 32-bit word of the address in host (little-endian) order
            packed = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8))
            found.add(str(ipaddress.ip_address(packed)))
    return found


def start_ui(env: dict[str, str], home: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`rag ui --port port` in `home`, once its health check answers."""
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(RAG), "ui", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"rag ui exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        return process
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rag ui not healthy after {STARTUP_SECONDS}s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.25)
    except BaseException:
        stop(process)
        raise


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh index of the seed articles plus one article full of markup; (directory, environment)."""
    home = tmp_path_factory.mktemp("ui")
    article = home / "harbour.txt"
    article.write_text(INJECTED_ARTICLE, encoding="utf-8")
    # every draft shown as an answer: the page's rendering is under test, "not sure" in test_ui
    env = cli_env(home, RAG_BACKEND="extractive", RAG_FETCH_HOST_DELAY="0", RAG_MIN_CONFIDENCE="0")
    built = subprocess.run(
        [str(RAG), "index", str(SEEDS), str(article)], env=env, cwd=home, capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr
    assert "2 added" in built.stdout, built.stdout
    return home, env


@contextlib.contextmanager
def running_ui(env: dict[str, str], home: Path) -> Iterator[tuple[str, int]]:
    """`rag ui` in `home` on a free port until the block ends; yields (url, port)."""
    port = free_port()
    process = start_ui(env, home, port, home / "ui.log")
    try:
        yield f"http://127.0.0.1:{port}/", port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def app(ui_home: tuple[Path, dict[str, str]]) -> Iterator[tuple[str, int]]:
    """`rag ui` over `ui_home`; yields (url, port)."""
    home, env = ui_home
    with running_ui(env, home) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            pytest.fail(f"{path} is missing: install the Debian package {package} (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def typeable(driver: WebDriver, css: str, timeout: float) -> WebElement:
    """The input matching `css` once it can take keys: present is not enough, since an input inside an
    expander that is still opening, or a page still re-rendering, refuses them (`ElementNotInteractable`)."""

    def ready(d: WebDriver) -> WebElement | bool:
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and element.is_enabled():
                return element
        return False

    found: WebElement = WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(
        ready, message=f"no usable {css} within {timeout}s"
    )
    return found


def ask(driver: WebDriver, url: str, question: str) -> WebElement:
    """Open the page, submit `question` in the chat input, wait for the finished answer; return it."""
    driver.get(url)
    box = typeable(driver, 'textarea[data-testid="stChatInputTextArea"]', STARTUP_SECONDS)
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    # The stats caption is written after the answer and its source cards: its presence means done.
    WebDriverWait(driver, ANSWER_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
        stats_captions, message=f"no finished answer within {ANSWER_SECONDS}s"
    )
    answer: WebElement = driver.find_element(By.CSS_SELECTOR, ".rag-answer")
    return answer


def conversation_address(driver: WebDriver) -> str:
    """The page's address once it names the conversation its answer was kept in (`?c=<id>`)."""
    WebDriverWait(driver, 20).until(
        lambda d: re.search(r"[?&]c=[0-9a-f]{32}\b", d.current_url), message="the address never named the conversation"
    )
    return str(driver.current_url)


def reopen(driver: WebDriver, address: str) -> WebElement:
    """Load `address` afresh (a reload: a new session) and wait for the kept answer to be shown; return it."""
    driver.get(address)
    WebDriverWait(driver, STARTUP_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
        stats_captions, message=f"the kept answer was not shown within {STARTUP_SECONDS}s"
    )
    answer: WebElement = driver.find_element(By.CSS_SELECTOR, ".rag-answer")
    return answer


def sidebar_buttons(driver: WebDriver) -> list[str]:
    sidebar = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    return [b.text for b in sidebar.find_elements(By.CSS_SELECTOR, "button")]


def click_button(driver: WebDriver, text: str) -> None:
    """Click the button labelled `text` (after its icon, if any), trying again while the page re-renders."""

    def clicked(d: WebDriver) -> bool:
        for button in d.find_elements(By.CSS_SELECTOR, "button"):
            if button.text.strip().splitlines()[-1:] == [text] and button.is_displayed():
                d.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
                try:
                    button.click()
                except ElementClickInterceptedException:
                    return False
                return True
        return False

    WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        clicked, message=f"no button {text!r} to click"
    )


def stats_captions(driver: WebDriver) -> list[str]:
    captions = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]')
    return [c.text for c in captions if "tokens:" in c.text]


def cited_card(driver: WebDriver, answer: WebElement) -> tuple[WebElement, str]:
    """The first citation link in the answer and the source card it points at."""
    links = answer.find_elements(By.CSS_SELECTOR, "a.rag-cite")
    assert links, answer.get_attribute("outerHTML")
    href = links[0].get_dom_attribute("href") or ""
    assert re.fullmatch(r"#src-[\w-]+", href), href
    card = driver.find_element(By.ID, href[1:])
    assert "rag-card" in (card.get_dom_attribute("class") or "").split()
    return card, href


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / name))


def head_visible(driver: WebDriver, card: WebElement) -> bool:
    """Whether the card's title line is on screen and not covered by another element (e.g. the page header)."""
    script = """
        const head = arguments[0].querySelector('.rag-card-head');
        const r = head.getBoundingClientRect();
        const x = r.left + Math.min(r.width / 2, 40), y = r.top + r.height / 2;
        if (y < 0 || y > window.innerHeight) return false;
        const hit = document.elementFromPoint(x, y);
        return hit !== null && head.contains(hit);
    """
    return bool(driver.execute_script(script, card))


def luminance(css_color: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", css_color)[:3])
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_serves_on_loopback_only(app: tuple[str, int]) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads listening sockets from /proc/net (Linux)")
    assert listening_addresses(app[1]) == {"127.0.0.1"}


def test_answer_cites_a_card_with_date_and_highlight(app: tuple[str, int], browser: WebDriver) -> None:
    answer = ask(browser, app[0], QUESTION)
    assert "Stanislav Zas" in answer.text
    assert "▌" not in answer.text  # the streaming cursor is gone from the final answer
    # the short answer is the headline, its quote below it, and the confidence under the answer
    short = answer.find_element(By.CSS_SELECTOR, ".rag-short")
    assert short.is_displayed() and short.text.startswith("Stanislav Zas")
    assert answer.find_element(By.CSS_SELECTOR, ".rag-quote").is_displayed()
    confidence = browser.find_element(By.CSS_SELECTOR, ".rag-confidence")
    assert confidence.is_displayed() and re.fullmatch(
        r"Confidence: (high|medium|not sure) \(\d\.\d\d\)", confidence.text
    )
    card, href = cited_card(browser, answer)
    assert card.is_displayed()
    assert "2020-10-08" in card.find_element(By.CSS_SELECTOR, ".rag-card-meta").text
    marks = card.find_elements(By.CSS_SELECTOR, "mark")
    assert any("Zas" in m.text and m.is_displayed() for m in marks), card.get_attribute("outerHTML")
    [stats] = stats_captions(browser)
    assert re.search(r"retrieve \d+ ms · generate \d+\.\d+ s .*tokens: \d+ prompt, \d+ answer", stats), stats
    screenshot(browser, "ui-answer.png")

    # Following the citation in a shorter window scrolls to the card with its title line visible,
    # not tucked under Streamlit's fixed page header; the conversation stays (no reload).
    browser.set_window_size(1280, 720)
    link = answer.find_element(By.CSS_SELECTOR, f'a.rag-cite[href="{href}"]')

    def followed(driver: WebDriver) -> bool:
        """The page reflows after the resize and while the last captions render; a click that lands on an
        element still moving, or is swallowed by a re-render, is tried again until the hash changes."""
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
        try:
            link.click()
        except ElementClickInterceptedException:
            return False
        return bool(driver.execute_script("return location.hash") == href)

    WebDriverWait(browser, 20).until(followed, message=f"the citation link never went to {href}")
    WebDriverWait(browser, 10).until(
        lambda d: head_visible(d, card), message="after following the citation the card's title line is hidden"
    )
    assert "Stanislav Zas" in browser.find_element(By.CSS_SELECTOR, ".rag-answer").text


def test_article_markup_renders_as_inert_text(app: tuple[str, int], browser: WebDriver) -> None:
    answer = ask(browser, app[0], INJECTION_QUESTION)
    assert "Mirela Vasquez" in answer.text
    card, _ = cited_card(browser, answer)
    assert "Mirela Vasquez" in card.text
    assert "2021-03-02" in card.find_element(By.CSS_SELECTOR, ".rag-card-meta").text
    screenshot(browser, "ui-injection.png")

    state: dict[str, Any] = browser.execute_script(
        """
        const scope = Array.from(document.querySelectorAll('.rag-answer, .rag-card'));
        const count = (selector) => scope.reduce((n, e) => n + e.querySelectorAll(selector).length, 0);
        return {
            pwned: typeof window.__pwned,
            injected: document.getElementById('injected') !== null,
            imgs: count('img'),
            onerror: document.querySelectorAll('[onerror]').length,
            bold: Array.from(document.querySelectorAll('strong, b')).filter(e => e.textContent.includes('bold')).length,
            jsLinks: document.querySelectorAll('a[href^="javascript:"]').length,
            scripts: Array.from(document.scripts).filter(s => s.textContent.includes('__pwned')).length,
            styles: Array.from(document.querySelectorAll('style')).filter(s => s.textContent.includes('display:none')
                && s.textContent.includes('body{')).length,
            bodyDisplay: getComputedStyle(document.body).display,
        };
        """
    )
    assert state == {
        "pwned": "undefined",
        "injected": False,
        "imgs": 0,
        "onerror": 0,
        "bold": 0,
        "jsLinks": 0,
        "scripts": 0,
        "styles": 0,
        "bodyDisplay": "block",
    }
    assert browser.find_element(By.TAG_NAME, "body").is_displayed() and card.is_displayed()
    # The markup is shown to the reader as the article's literal text, in the card and the quoting answer.
    for shown in (card.text, answer.text):
        assert "<script>window.__pwned = 1</script>" in shown
        assert '<img src=x onerror="window.__pwned=2">' in shown
        assert '<h1 id="injected">BIG</h1>' in shown
        assert "**bold** and [link](javascript:window.__pwned=3)" in shown


def test_highlight_is_legible_in_the_dark_theme(app: tuple[str, int], browser: WebDriver) -> None:
    """Streamlit follows the system's colour scheme; the highlighted quote must stay readable in dark mode."""
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    answer = ask(browser, app[0], QUESTION)
    card, _ = cited_card(browser, answer)
    page = browser.execute_script(
        "return getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor"
    )
    assert luminance(page) < 0.1, f"the page is not in the dark theme: background {page}"
    mark = card.find_element(By.CSS_SELECTOR, "mark")
    text, background = mark.value_of_css_property("color"), mark.value_of_css_property("background-color")
    screenshot(browser, "ui-answer-dark.png")
    assert contrast(text, background) >= 4.5, f"highlight text {text} on {background}"


def test_conversation_survives_a_reload(app: tuple[str, int], browser: WebDriver) -> None:
    """The open conversation is named in the address, so reloading the page shows it again from the store:
    the answer, its source cards, the rating given; the sidebar lists it and renames it as plain text."""
    first = ask(browser, app[0], QUESTION).text
    address = conversation_address(browser)
    screenshot(browser, "ui-feedback.png")
    click_button(browser, "Helpful")
    WebDriverWait(browser, 20).until(
        lambda d: "Thanks — recorded as helpful" in d.find_element(By.TAG_NAME, "body").text,
        message="the rating was not acknowledged",
    )

    answer = reopen(browser, address)
    assert answer.text == first and "Stanislav Zas" in first
    card, _ = cited_card(browser, answer)
    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: card.is_displayed() and any("Zas" in m.text for m in card.find_elements(By.CSS_SELECTOR, "mark")),
        message="the reopened card does not highlight the quote",
    )
    WebDriverWait(browser, 20).until(
        lambda d: "Thanks — recorded as helpful" in d.find_element(By.TAG_NAME, "body").text,
        message="the reopened conversation does not show the rating given",
    )
    assert browser.current_url == address
    # The label is escaped for Streamlit's markdown; the reader sees the title and date as written.
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: any(re.fullmatch(rf"{re.escape(QUESTION)} · {date}", b) for b in sidebar_buttons(d)),
        message="the sidebar does not list the conversation",
    )

    hostile = '<img src=x onerror="window.__pwned=4"> **bold** <h1 id="injected">T</h1>'  # within a title's length
    browser.find_element(By.XPATH, "//summary[contains(., 'This conversation')]").click()
    title = typeable(browser, 'input[aria-label="Title"]', 20)
    title.send_keys(Keys.CONTROL, "a")
    title.send_keys(hostile, Keys.ENTER)
    click_button(browser, "Rename")
    listed = '<img src=x onerror="window.__pwned=4"> **bold**…'  # clipped in the list
    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: any(re.fullmatch(rf"{re.escape(listed)} · {date}", b) for b in sidebar_buttons(d)),
        message="the renamed conversation is not listed with its title as written",
    )
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    [button] = [b for b in sidebar.find_elements(By.CSS_SELECTOR, "button") if b.text.startswith(listed)]
    ActionChains(browser).move_to_element(button).perform()
    tooltip = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="stTooltipContent"]'), message="no tooltip"
    )
    assert tooltip.text == hostile, "the whole title shows on hover, as written"
    state = browser.execute_script(
        """
        const sidebar = document.querySelector('[data-testid="stSidebar"]');
        return {
            pwned: typeof window.__pwned,
            injected: document.getElementById('injected') !== null,
            imgs: sidebar.querySelectorAll('img').length,
            bold: Array.from(sidebar.querySelectorAll('strong, b')).filter(e => e.textContent.includes('bold')).length,
        };
        """
    )
    assert state == {"pwned": "undefined", "injected": False, "imgs": 0, "bold": 0}
    screenshot(browser, "ui-conversations.png")
    assert reopen(browser, address).text == first


def test_conversation_survives_a_server_restart(ui_home: tuple[Path, dict[str, str]], browser: WebDriver) -> None:
    """Ask, stop `rag ui`, start it again on the same port and data: reloading the page shows the answer."""
    home, env = ui_home
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_ui(env, home, port, home / "restart-1.log")
    try:
        first = ask(browser, url, QUESTION).text
        address = conversation_address(browser)
    finally:
        stop(server)
    server = start_ui(env, home, port, home / "restart-2.log")
    try:
        answer = reopen(browser, address)
        assert answer.text == first and "Stanislav Zas" in first
        card, _ = cited_card(browser, answer)
        assert card.is_displayed() and "2020-10-08" in card.text
    finally:
        stop(server)


def test_a_followed_feed_is_synced_and_its_article_cited(
    app: tuple[str, int], browser: WebDriver, news_site: str
) -> None:
    """The Feeds panel in the sidebar: a feed added by its address and synced is listed with its link and
    what the sync brought; a question about one of its articles cites a card linking to the article's page."""
    feed_url = f"{news_site}/rss.xml"
    browser.get(app[0])
    WebDriverWait(browser, STARTUP_SECONDS).until(
        lambda d: d.find_element(By.XPATH, "//summary[contains(., 'Feeds')]"), message="no Feeds panel"
    ).click()
    box = typeable(browser, 'input[aria-label="Add feed"]', 20)
    box.send_keys(feed_url, Keys.ENTER)
    click_button(browser, "Add feed")
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "press Sync now" in sidebar.text, message="the feed was not added"
    )
    click_button(browser, "Sync now")
    WebDriverWait(browser, ANSWER_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "2 added, 0 updated, 0 unchanged" in sidebar.text, message="the sync did not report its articles"
    )
    assert re.search(r"2 articles so far · last synced \d{4}-\d\d-\d\d \d\d:\d\d — 2 added, 0 updated", sidebar.text)
    link = sidebar.find_element(By.CSS_SELECTOR, f'.rag-feed a[href="{feed_url}"]')
    assert link.is_displayed() and link.text == feed_url
    screenshot(browser, "ui-feeds.png")

    answer = ask(browser, app[0], NEWS_QUESTION)
    assert "Odalys Wembury" in answer.text
    card, _ = cited_card(browser, answer)
    page = card.find_element(By.CSS_SELECTOR, f'a[href="{news_site}/news/ferry.html"]')
    assert page.is_displayed() and "2024-03-04" in card.text
