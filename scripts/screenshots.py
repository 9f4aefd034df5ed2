"""Screenshots of every dashboard page, from the demo's data, for the README (``make screenshots``).

Starts ``corral serve`` on the demo's home (``./.corral``, made by ``make demo``) on a free port, opens each
page in Debian's headless Chromium at 1280 px and at 390 px (a phone), and saves full-page PNGs under
``docs/screenshots/``. Authentication is on: the requests and the browser use the admin token the server
wrote to the home on first start (or ``CORRAL_TOKEN``), the browser as the dashboard's sign-in cookie.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

import corral

OUT = Path("docs/screenshots")
CHROMIUM = os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
WIDTHS = {"desktop": 1280, "phone": 390}


def start() -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "CORRAL_PIPELINES__WORKER": "false", "CORRAL_ALERTS__ENABLED": "false"}
    log = open(OUT / ".serve.log", "wb")  # noqa: SIM115 - the server writes to it until it stops
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("corral")), "serve", "--port", "0"], env=env, stderr=log, stdout=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(rb"Uvicorn running on (http://[\d.]+:\d+)", (OUT / ".serve.log").read_bytes())
        if found:
            return server, found.group(1).decode()
        time.sleep(0.2)
    server.kill()
    raise SystemExit("corral serve did not start; see docs/screenshots/.serve.log")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server, base = start()
    try:
        auth = corral.auth_headers()
        token = auth["Authorization"].removeprefix("Bearer ")
        params = {"deployment": "car-loan", "limit": 1}
        records = httpx.get(f"{base}/v1/audit/predictions", params=params, headers=auth).json()
        first = records["records"][0]["prediction_id"]
        httpx.get(f"{base}/v1/audit/predictions/{first}/explanation", headers=auth, timeout=120)  # stored
        runs = httpx.get(f"{base}/v1/runs", params={"limit": 50}, headers=auth).json()
        passed = next((r for r in runs if r.get("state") == "succeeded"), runs[0] if runs else None)
        pages = {
            "overview": "/ui",
            "deployment": "/ui/deployments/car-loan?window=86400",
            "drift": "/ui/deployments/car-loan/drift",
            "models": "/ui/models",
            "version": "/ui/models/car-loan/3",
            "audit": "/ui/audit?search=1&deployment=car-loan",
            "prediction": f"/ui/audit/{first}",
            "pipelines": "/ui/pipelines",
        }
        if passed is not None:
            pages["run"] = f"/ui/runs/{passed['id']}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for screen, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.context.add_cookies([{"name": "corral_token", "value": token, "url": base}])
                for name, path in pages.items():
                    page.goto(base + path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(OUT / f"{name}-{screen}.png"), full_page=screen == "desktop")
                    print(f"{OUT}/{name}-{screen}.png")
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        (OUT / ".serve.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
