"""Peak memory of the chat page: `rag ui` over an index, one question asked in headless Chromium.

Streamlit runs in the `rag ui` process itself, so that process's high-water mark (VmHWM) is the page's
peak resident memory, read once the answer is on screen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.measure import free_port, peak_rss_of

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_SECONDS = 300


def peak_rss(index_dir: Path, question: str, backend: str) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "RAG_BACKEND": backend, "RAG_PROGRESS": "false"}
    rag = str(Path(sys.executable).with_name("rag"))
    with tempfile.TemporaryDirectory(prefix="rag-bench-page-") as home:
        server = subprocess.Popen(
            [rag, "ui", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            started = time.perf_counter()
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"rag ui exited with {server.returncode}")
                try:
                    with urllib.request.urlopen(f"{url}_stcore/health", timeout=2) as response:
                        if response.read() == b"ok":
                            break
                except OSError:
                    time.sleep(0.25)
                if time.perf_counter() - started > WAIT_SECONDS:
                    raise RuntimeError(f"rag ui not healthy after {WAIT_SECONDS} s")
            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={home}/profile")
            driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
            try:
                asked = time.perf_counter()
                driver.get(url)
                box = WebDriverWait(driver, WAIT_SECONDS).until(
                    lambda d: d.find_element(By.CSS_SELECTOR, 'textarea[data-testid="stChatInputTextArea"]')
                )
                box.send_keys(question, Keys.ENTER)
                WebDriverWait(driver, WAIT_SECONDS).until(
                    lambda d: any(
                        "tokens:" in c.text
                        for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]')
                    )
                )
                answered = time.perf_counter() - asked
            finally:
                driver.quit()
            return {"backend": backend, "peak_rss_mb": peak_rss_of(server.pid), "first_answer_s": answered}
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()
