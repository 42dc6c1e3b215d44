"""The dashboard in a real browser against a real fleet (tests/browser/conftest.py): log in,
see three live clients, restart a workload by clicking and watch its pid change, open a
deployment, JavaScript off, a POST without its CSRF token refused, a phone-sized screen (no
page wider than it), nothing fetched from anywhere but the central, and a device whose daemon
stops turning stale on the open page. The tests share one fleet and run in
file order (the last one stops pi-03)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import NAMES, OPERATOR, Fleet, shot
from tests.integration.harness import wait_for

TIMEOUT_MS = 60_000  # the machine is shared: generous, and every wait is bounded


@pytest.fixture
def context(chromium: Any, fleet: Fleet) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(TIMEOUT_MS)
    fetched: list[str] = []
    ctx.on("request", lambda request: fetched.append(request.url))
    yield ctx
    ctx.close()
    # No CDN, nothing from the network: every page, script, style and refresh is the central's.
    elsewhere = [url for url in fetched if not url.startswith(fleet.url + "/")]
    assert fetched and elsewhere == [], elsewhere


def log_in(page: Any, fleet: Fleet) -> None:
    page.goto(fleet.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", OPERATOR)
    page.click("button[type=submit]")
    page.wait_for_url(fleet.url + "/")


def test_log_in_and_see_three_live_clients(fleet: Fleet, context: Any) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(fleet.url + "/")
    expect(page.locator("#token")).to_be_visible()
    shot(page, "login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("not the operator")
    page.fill("#token", OPERATOR)
    page.click("button[type=submit]")
    page.wait_for_url(fleet.url + "/")
    for name in NAMES:
        row = page.locator(f'tr[data-client="{name}"]')
        expect(row).to_have_class(re.compile(r"\bonline\b"))
        # svc and the device's own @client-api and @heartbeat: the one rule counts them all.
        expect(row.locator("td.workloads")).to_contain_text("3 ok")
        expect(row.locator("td.release")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "mc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.fill("input[name=q]", "02")
    page.click(".filters button[type=submit]")
    expect(page.locator("tr[data-client]")).to_have_count(1)
    page.select_option("select[name=tag]", "garage")
    page.fill("input[name=q]", "")
    page.click(".filters button[type=submit]")
    expect(page.locator("tr[data-client]")).to_have_count(1)
    expect(page.locator('tr[data-client="pi-03"]')).to_be_visible()
    page.goto(fleet.url + "/")
    page.click("th.name a")  # sort by name, descending
    expect(page.locator("tr[data-client]").first).to_have_attribute("data-client", "pi-03")
    page.goto(fleet.url + "/")
    shot(page, "overview")


def test_restart_by_clicking_changes_the_pid_on_the_page(fleet: Fleet, context: Any) -> None:
    from playwright.sync_api import expect

    device = fleet.devices["pi-01"]
    first = device.wait_state("svc", "RUNNING")["pid"]
    page = context.new_page()
    log_in(page, fleet)
    page.click('tr[data-client="pi-01"] td.name a')
    page.wait_for_url(fleet.url + "/clients/pi-01")
    pid_cell = page.locator('tr[data-workload="svc"] td.pid')
    expect(pid_cell).to_have_text(str(first))
    page.locator('tr[data-workload="svc"] button.restart').click()
    expect(page.locator(".flash.ok")).to_contain_text("restart svc on pi-01: done")
    wait_for(lambda: device.status("svc").get("pid") not in (None, first), 60, 0.2, "new pid")
    new = device.wait_state("svc", "RUNNING")["pid"]
    # The page refreshes itself (no reload): the new pid arrives with a heartbeat.
    expect(pid_cell).to_have_text(str(new), timeout=TIMEOUT_MS)
    assert page.evaluate("document.body.getAttribute('data-refreshed')")
    expect(page.locator("pre.log")).to_be_visible()
    expect(page.locator("svg polyline").first).to_be_attached(timeout=TIMEOUT_MS)
    shot(page, "client")
    page.goto(fleet.url + "/events")
    expect(page.locator("tr.action").first).to_contain_text("restart")
    shot(page, "events")


def test_open_a_deployment(fleet: Fleet, context: Any) -> None:
    from playwright.sync_api import expect

    batches = [
        {"status": "ok", "clients": [{"name": "pi-01", "status": "ok"},
                                     {"name": "pi-02", "status": "ok"}]},
        {"status": "failed", "clients": [{"name": "pi-03", "status": "failed",
                                          "message": "health gate: svc FATAL"}]},
    ]  # fmt: skip
    code, dep = fleet.api("/api/v1/deployments", "POST", {
        "release": "2026-12-01-abc123", "actor": "browser-test", "status": "rolled_back",
        "batches": batches, "message": "batch 2 failed its health gate; rolled back",
    })  # fmt: skip
    assert code == 201, dep
    page = context.new_page()
    log_in(page, fleet)
    page.click("nav >> text=Deployments")
    expect(page.locator(".deployment").first).to_contain_text("2026-12-01-abc123")
    shot(page, "deployments")
    page.click(f'a[href="/deployments/{dep["id"]}"]')
    page.wait_for_url(f"{fleet.url}/deployments/{dep['id']}")
    expect(page.locator(".batch")).to_have_count(2)
    expect(page.locator(".batch").nth(1)).to_contain_text("health gate: svc FATAL")
    shot(page, "deployment")


def test_with_javascript_off_the_pages_still_show_the_data(fleet: Fleet, chromium: Any) -> None:
    from playwright.sync_api import expect

    ctx = chromium.new_context(java_script_enabled=False)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        log_in(page, fleet)
        expect(page.locator("tr[data-client]")).to_have_count(3)
        page.goto(fleet.url + "/clients/pi-02")
        expect(page.locator('tr[data-workload="svc"] td.state')).to_have_text("RUNNING")
        shot(page, "client-no-js")
    finally:
        ctx.close()


def test_a_post_without_the_csrf_token_is_refused(fleet: Fleet, context: Any) -> None:
    page = context.new_page()
    log_in(page, fleet)
    pid = fleet.devices["pi-02"].status("svc")["pid"]
    url = fleet.url + "/clients/pi-02/workloads/svc/stop"
    for form in ({}, {"csrf": "forged"}):
        reply = context.request.post(url, form=form, max_redirects=0)  # the session cookie goes
        assert reply.status == 403, reply.status
        assert "CSRF" in reply.text()
    status = fleet.devices["pi-02"].status("svc")
    assert (status["state"], status["pid"]) == ("RUNNING", pid)


def test_readable_on_a_phone(fleet: Fleet, chromium: Any) -> None:
    from playwright.sync_api import expect

    ctx = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        log_in(page, fleet)
        expect(page.locator("tr[data-client]")).to_have_count(3)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the overview is {width}px wide on a 390px screen"
        shot(page, "overview-phone")
        page.goto(fleet.url + "/clients/pi-01")
        expect(page.locator('tr[data-workload="svc"]')).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the client page is {width}px wide on a 390px screen"
        for action in ("start", "stop", "restart"):  # on the screen, not scrolled out of it
            box = page.locator(f'tr[data-workload="svc"] button.{action}').bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
                action, box,
            )  # fmt: skip
        shot(page, "client-phone")
        for path, name in (("/deployments", "deployments-phone"), ("/events", "events-phone")):
            page.goto(fleet.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, f"{path} is {width}px wide on a 390px screen"
            # Nor does a table hide columns to the side (its box would scroll).
            hidden = page.evaluate(
                "[...document.querySelectorAll('.scroll')].filter("
                "e => e.scrollWidth > e.clientWidth + 1).length"
            )
            assert hidden == 0, f"{path}: a table is wider than the screen"
            shot(page, name)
    finally:
        ctx.close()


def test_a_stopped_daemon_turns_stale_on_the_open_page(fleet: Fleet, context: Any) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    log_in(page, fleet)
    row = page.locator('tr[data-client="pi-03"]')
    expect(row).to_have_class(re.compile(r"\bonline\b"))
    assert fleet.devices["pi-03"].stop(timeout=60) == 0
    expect(row).to_have_class(re.compile(r"\bstale\b"), timeout=TIMEOUT_MS)  # no reload
    expect(page.locator('tr[data-client="pi-01"]')).to_have_class(re.compile(r"\bonline\b"))
    shot(page, "overview-stale")
