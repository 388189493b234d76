"""The example SPA (examples/spa) and /api/docs in headless Chromium, against real servers.

The SPA is served from one port and the API from another, so every call is cross-origin, with
the SPA's origin on the API's CORS allowlist. ``localhost`` on the SPA's port is a second
origin that is NOT on the allowlist. A second API with 3-second access tokens drives the
expiry tests. CORS is never intercepted (no ``route()``): the browser talks to the server.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.browser import (
    ARTIFACTS,
    REFRESH_COOKIE,
    SPA_DIR,
    Api,
    StaticServer,
    need_chromium,
    need_playwright,
)
from tests.conftest import PASSWORD, LiveServer, launch_server, server_env, wait_healthy

with contextlib.suppress(ImportError):  # then the fixtures skip (or fail in CI) first
    from playwright.sync_api import expect, sync_playwright

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Response

pytestmark = pytest.mark.slow

SHORT_ACCESS_SECONDS = 3
LOGIN_FAILURE_BUDGET = 3  # failed logins per (email, address) before a 429
SCREENSHOT = ARTIFACTS / "spa-tasks.png"
# The docs page is opened under a name Chromium maps to 127.0.0.1, so that nothing in Swagger
# UI that exempts "localhost" from a request (its validator badge does) can hide one.
DOCS_HOST = "api.test"
LOCAL_HOSTS = {"127.0.0.1", "localhost", DOCS_HOST}


# --- servers and browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def spa() -> Iterator[StaticServer]:
    """examples/spa on a free port of 127.0.0.1."""
    server = StaticServer(SPA_DIR).start()
    yield server
    server.stop()


def _api_server(workdir: Path, spa: StaticServer, **extra: str) -> Iterator[LiveServer]:
    """A real ``taskapi serve`` that allows the SPA's origin, with plain-http cookies."""
    env = {
        **server_env(workdir),
        "TASKAPI_CORS_ORIGINS": spa.origin("127.0.0.1"),
        "TASKAPI_COOKIE_SECURE": "false",  # http on 127.0.0.1
        "TASKAPI_COOKIE_SAMESITE": "Lax",  # 127.0.0.1:<spa> and 127.0.0.1:<api> are one site
        # Every test logs in from 127.0.0.1: only the failure budget stays tight (429 test).
        "TASKAPI_RATELIMIT_LOGIN": "1000/minute",
        "TASKAPI_RATELIMIT_REGISTER": "1000/hour",
        "TASKAPI_RATELIMIT_PASSWORD_CHECKS_ADDRESS": "1000/minute",
        "TASKAPI_RATELIMIT_LOGIN_FAILURES": f"{LOGIN_FAILURE_BUDGET}/15 minutes",
        **extra,
    }
    server = launch_server(env, workdir)
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_server(
    tmp_path_factory: pytest.TempPathFactory, spa: StaticServer, browser: Browser
) -> Iterator[LiveServer]:
    """The API with default token lifetimes (the browser is checked for first)."""
    yield from _api_server(tmp_path_factory.mktemp("spa-api"), spa)


@pytest.fixture(scope="module")
def short_api_server(
    tmp_path_factory: pytest.TempPathFactory, spa: StaticServer, browser: Browser
) -> Iterator[LiveServer]:
    """The API with access tokens that expire after a few seconds."""
    yield from _api_server(
        tmp_path_factory.mktemp("spa-short-api"),
        spa,
        TASKAPI_ACCESS_TOKEN_SECONDS=str(SHORT_ACCESS_SECONDS),
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, shared by the module's tests."""
    need_playwright()
    executable = need_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", f"--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1"],
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) per test; uncaught page errors fail it."""
    errors: list[str] = []
    fresh = browser.new_context()
    fresh.set_default_timeout(10_000)
    fresh.on("weberror", lambda error: errors.append(str(error.error)))
    yield fresh
    fresh.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def api(api_server: LiveServer) -> Iterator[Api]:
    """A Python client of the default API."""
    client = Api(api_server.url)
    yield client
    client.close()


@pytest.fixture
def short_api(short_api_server: LiveServer) -> Iterator[Api]:
    """A Python client of the short-lifetime API."""
    client = Api(short_api_server.url)
    yield client
    client.close()


# --- driving the SPA -------------------------------------------------------------------------


def path_of(response: Response) -> str:
    """The path of a response's URL."""
    return urlsplit(response.url).path


@dataclass
class Traffic:
    """Every API response a page saw, in order (Playwright does not report CORS preflights)."""

    responses: list[Response] = field(default_factory=list)

    def calls(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of each API call."""
        return [(r.request.method, path_of(r), r.status) for r in self.responses]

    def since(self, start: int) -> list[tuple[str, str, int]]:
        """The calls after the first ``start``."""
        return self.calls()[start:]

    def last(self, method: str, path: str) -> Response:
        """The last response to ``method path``."""
        for response in reversed(self.responses):
            if response.request.method == method and path_of(response) == path:
                return response
        raise AssertionError(f"no {method} {path} in {self.calls()}")


def watch(page: Page) -> Traffic:
    """Record the page's API responses."""
    traffic = Traffic()
    page.on("response", lambda r: traffic.responses.append(r) if "/api/" in r.url else None)
    return traffic


def open_spa(page: Page, spa_origin: str, api_url: str | None) -> None:
    """Open the SPA (pointing it at ``api_url`` when given) and wait until it has started."""
    query = f"?{urlencode({'api': api_url})}" if api_url else ""
    page.goto(f"{spa_origin}/index.html{query}")
    expect(page.locator("body")).not_to_have_attribute("data-state", "loading")


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill the login form and wait for the task list."""
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(password)
    page.locator("#login-submit").click()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-in")
    expect(page.get_by_test_id("who")).to_contain_text(email)


def add_task(page: Page, title: str) -> None:
    """Create a task through the form and wait until it is listed."""
    page.locator("#new-task-title").fill(title)
    page.locator("#new-task-submit").click()
    expect(task_item(page, title)).to_be_visible()


def task_item(page: Page, title: str) -> Locator:
    """The list item whose title is exactly ``title``."""
    title_cell = page.get_by_test_id("task-title").get_by_text(title, exact=True)
    return page.get_by_test_id("task").filter(has=title_cell)


def titles(page: Page) -> Locator:
    """The titles of the listed tasks."""
    return page.get_by_test_id("task-title")


def error_box(page: Page) -> Locator:
    """The SPA's error area."""
    return page.get_by_test_id("error")


def let_access_tokens_expire() -> None:
    """Wait until every access token issued before now has expired.

    Called after the page shows the result of the last login or refresh, so each token was
    issued before this call; ``exp`` is at most ``SHORT_ACCESS_SECONDS`` after issuance. The
    tests then assert the 401 ``token_expired`` they provoke, so a short wait cannot hide.
    """
    time.sleep(SHORT_ACCESS_SECONDS + 0.2)


def refresh_cookies(context: BrowserContext, api_url: str) -> list[str]:
    """The HttpOnly refresh cookies the browser would send to the API's /api/v1/auth."""
    cookies = context.cookies(f"{api_url}/api/v1/auth/refresh")  # the cookie's path matters
    return [str(c.get("value")) for c in cookies if c.get("name") == REFRESH_COOKIE]


def assert_silent_refresh(traffic: Traffic, start: int, method: str, path: str, ok: int) -> None:
    """After ``start``: the call got 401 token_expired, one refresh with the cookie succeeded,
    and the same call was retried once and succeeded."""
    refresh = ("POST", "/api/v1/auth/refresh")
    seen = [
        r
        for r in traffic.responses[start:]
        if (r.request.method, path_of(r)) in {(method, path), refresh}
    ]
    calls = [(r.request.method, path_of(r), r.status) for r in seen]
    assert calls[:3] == [(method, path, 401), (*refresh, 200), (method, path, ok)], calls
    assert seen[0].json()["code"] == "token_expired"


# --- flows -----------------------------------------------------------------------------------


def test_sign_up_manage_tasks_log_out_and_screenshot(
    context: BrowserContext, spa: StaticServer, api: Api
) -> None:
    """Sign up, create, edit, complete, filter, delete, escape user content, log out."""
    page = context.new_page()
    open_spa(page, spa.origin(), api.base)
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    expect(page.get_by_test_id("api-url")).to_have_text(api.base)

    email = f"ana-{time.time_ns()}@example.com"
    page.locator("#signup-name").fill("Ana")
    page.locator("#signup-email").fill(email)
    page.locator("#signup-password").fill(PASSWORD)
    page.locator("#signup-submit").click()
    expect(page.get_by_test_id("who")).to_have_text(f"Ana ({email})")
    expect(page.locator("#empty")).to_be_visible()

    hostile = '<img src=x onerror="window.pwned = 1"> & <b>bold</b>'
    for title in ("Buy milk", "Walk the dog", hostile):
        add_task(page, title)
    expect(titles(page)).to_have_text([hostile, "Walk the dog", "Buy milk"])  # newest first
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#task-list img, #task-list b").count() == 0

    walk = task_item(page, "Walk the dog")
    walk.get_by_role("button", name="Edit").click()
    walk.get_by_label("Title").fill("Walk the dog twice")
    walk.get_by_role("button", name="Save").click()
    expect(task_item(page, "Walk the dog twice")).to_be_visible()

    milk = task_item(page, "Buy milk")
    milk.get_by_role("checkbox").check()
    expect(milk).to_have_class(re.compile(r"\bcompleted\b"))
    expect(milk.get_by_role("checkbox")).to_be_enabled()

    page.locator("#filter").select_option(label="Completed")
    expect(titles(page)).to_have_text(["Buy milk"])
    page.locator("#filter").select_option(label="Open")
    expect(titles(page)).to_have_text([hostile, "Walk the dog twice"])
    page.locator("#filter").select_option(label="All")
    expect(titles(page)).to_have_text([hostile, "Walk the dog twice", "Buy milk"])

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot of the SPA's task list: {SCREENSHOT}")

    task_item(page, hostile).get_by_role("button", name="Delete").click()
    expect(titles(page)).to_have_text(["Walk the dog twice", "Buy milk"])

    token = api.login(email)
    stored = {t["title"]: t["completed"] for t in api.tasks(token)}
    assert stored == {"Walk the dog twice": False, "Buy milk": True}

    assert len(refresh_cookies(context, api.base)) == 1
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    assert refresh_cookies(context, api.base) == []
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")


def test_paging_follows_next_cursor(context: BrowserContext, spa: StaticServer, api: Api) -> None:
    """23 tasks come in pages of 10 via next_cursor, none repeated or skipped, then no more."""
    email = api.register()
    token = api.login(email)
    for number in range(1, 24):
        api.create_task(token, f"Task {number:02}")
    expected = [f"Task {n:02}" for n in range(23, 0, -1)]

    page = context.new_page()
    traffic = watch(page)
    open_spa(page, spa.origin(), api.base)
    log_in(page, email)
    expect(titles(page)).to_have_text(expected[:10])
    first_page = traffic.last("GET", "/api/v1/tasks").json()

    page.get_by_role("button", name="Load more").click()
    expect(titles(page)).to_have_text(expected[:20])
    second = traffic.last("GET", "/api/v1/tasks")
    assert parse_qs(urlsplit(second.url).query)["cursor"] == [first_page["next_cursor"]]

    page.get_by_role("button", name="Load more").click()
    expect(titles(page)).to_have_text(expected)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    assert traffic.last("GET", "/api/v1/tasks").json()["next_cursor"] is None


def test_error_messages_from_the_contract(
    context: BrowserContext, spa: StaticServer, api: Api
) -> None:
    """409 on sign-up, 401 then 429 with its wait on login, 400 with details, 404."""
    taken = api.register()
    page = context.new_page()
    open_spa(page, spa.origin(), api.base)

    page.locator("#signup-email").fill(taken)
    page.locator("#signup-password").fill(PASSWORD)
    page.locator("#signup-submit").click()
    expect(error_box(page)).to_have_attribute("data-code", "email_taken")
    expect(error_box(page)).to_contain_text("already exists")

    page.locator("#login-email").fill(taken)
    page.locator("#login-password").fill("not the password")
    for _ in range(LOGIN_FAILURE_BUDGET):
        page.locator("#login-submit").click()
        expect(error_box(page)).to_have_attribute("data-code", "invalid_credentials")
    with page.expect_response(lambda r: r.url.endswith("/auth/login")) as limited:
        page.locator("#login-submit").click()
    wait = limited.value.headers["retry-after"]
    assert limited.value.status == 429 and int(wait) >= 1
    expect(error_box(page)).to_have_attribute("data-code", "rate_limited")
    expect(error_box(page)).to_have_attribute("data-retry-after", wait)
    expect(error_box(page)).to_contain_text(re.compile(r"Try again in \d+ (seconds?|minutes)\."))

    email = api.register()
    log_in(page, email)
    page.locator("#new-task-title").fill("   ")
    page.locator("#new-task-submit").click()
    expect(error_box(page)).to_have_attribute("data-code", "validation_error")
    expect(error_box(page).locator('li[data-field="title"]')).to_contain_text("title: ")

    add_task(page, "Deleted behind your back")
    token = api.login(email)
    (doomed,) = api.tasks(token)
    api.delete_task(token, doomed["id"])
    task_item(page, "Deleted behind your back").get_by_role("button", name="Delete").click()
    expect(error_box(page)).to_have_attribute("data-code", "not_found")
    expect(error_box(page)).to_contain_text("not found")
    expect(titles(page)).to_have_count(0)


# --- sessions across reloads, tabs and expiry ------------------------------------------------


def test_reload_and_new_tab_restore_the_session(
    context: BrowserContext, spa: StaticServer, api: Api
) -> None:
    """The cookie alone brings the session back (GET /auth/csrf, then refresh); no new session,
    and no token is stored where scripts can read it."""
    email = api.register()
    page = context.new_page()
    traffic = watch(page)
    open_spa(page, spa.origin(), api.base)
    log_in(page, email)
    add_task(page, "Survives reloads")
    login = traffic.last("POST", "/api/v1/auth/login").json()

    stored = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert login["access_token"] not in stored and login["csrf_token"] not in stored
    assert REFRESH_COOKIE not in page.evaluate("document.cookie")

    start = len(traffic.responses)
    page.reload()
    expect(task_item(page, "Survives reloads")).to_be_visible()
    expect(page.get_by_test_id("who")).to_contain_text(email)
    restored = traffic.since(start)
    assert restored[:2] == [
        ("GET", "/api/v1/auth/csrf", 200),
        ("POST", "/api/v1/auth/refresh", 200),
    ], restored
    assert traffic.last("GET", "/api/v1/auth/csrf").json() == {"csrf_token": login["csrf_token"]}

    tab = context.new_page()  # no ?api=: the SPA remembers which API it talks to
    tab_traffic = watch(tab)
    open_spa(tab, spa.origin(), None)
    expect(task_item(tab, "Survives reloads")).to_be_visible()
    add_task(tab, "Added in the second tab")
    assert ("POST", "/api/v1/auth/refresh", 200) in tab_traffic.calls()

    page.locator("#filter").select_option(label="Open")  # the first tab still works
    expect(titles(page)).to_have_text(["Added in the second tab", "Survives reloads"])

    token = api.login(email)
    assert len(api.sessions(token)) == 2  # the browser's one, and this check's


def test_two_tabs_refresh_one_after_the_other(
    context: BrowserContext, spa: StaticServer, short_api: Api
) -> None:
    """Tab A refreshes (rotating the shared cookie), then tab B: both keep working."""
    email = short_api.register()
    tab_a = context.new_page()
    traffic_a = watch(tab_a)
    open_spa(tab_a, spa.origin(), short_api.base)
    log_in(tab_a, email)
    tab_b = context.new_page()
    traffic_b = watch(tab_b)
    open_spa(tab_b, spa.origin(), short_api.base)
    expect(tab_b.get_by_test_id("who")).to_contain_text(email)
    let_access_tokens_expire()

    start_a = len(traffic_a.responses)
    add_task(tab_a, "From tab A")
    assert_silent_refresh(traffic_a, start_a, "POST", "/api/v1/tasks", 201)
    start_b = len(traffic_b.responses)
    add_task(tab_b, "From tab B")
    assert_silent_refresh(traffic_b, start_b, "POST", "/api/v1/tasks", 201)
    expect(titles(tab_b)).to_have_text(["From tab B", "From tab A"])

    csrf_a = traffic_a.last("POST", "/api/v1/auth/refresh").json()["csrf_token"]
    csrf_b = traffic_b.last("POST", "/api/v1/auth/refresh").json()["csrf_token"]
    assert csrf_a == csrf_b  # one session, one CSRF value, whichever tab rotated last

    tab_a.locator("#filter").select_option(label="Open")
    expect(titles(tab_a)).to_have_text(["From tab B", "From tab A"])


def test_expired_access_token_is_refreshed_silently(
    context: BrowserContext, spa: StaticServer, short_api: Api
) -> None:
    """A 401 token_expired is answered by one refresh and one retry, within the same session."""
    email = short_api.register()
    token = short_api.login(email)
    short_api.create_task(token, "Listed after expiry")
    page = context.new_page()
    traffic = watch(page)
    open_spa(page, spa.origin(), short_api.base)
    log_in(page, email)
    expect(titles(page)).to_have_text(["Listed after expiry"])
    let_access_tokens_expire()

    start = len(traffic.responses)
    with page.expect_response(lambda r: "/api/v1/tasks?" in r.url and r.status == 200):
        page.locator("#filter").select_option(label="Open")
    expect(titles(page)).to_have_text(["Listed after expiry"])
    assert_silent_refresh(traffic, start, "GET", "/api/v1/tasks", 200)
    expect(error_box(page)).to_be_hidden()
    assert len(short_api.sessions(short_api.login(email))) == 3  # two here, the browser's one


def test_logout_after_the_access_token_expired(
    context: BrowserContext, spa: StaticServer, short_api: Api
) -> None:
    """Logout with the cookie and X-CSRF-TOKEN works after expiry and revokes the session."""
    email = short_api.register()
    page = context.new_page()
    traffic = watch(page)
    open_spa(page, spa.origin(), short_api.base)
    log_in(page, email)
    csrf = traffic.last("POST", "/api/v1/auth/login").json()["csrf_token"]
    let_access_tokens_expire()
    (cookie,) = refresh_cookies(context, short_api.base)

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    assert traffic.last("POST", "/api/v1/auth/logout").status == 204
    assert refresh_cookies(context, short_api.base) == []
    expect(error_box(page)).to_be_hidden()

    # The server-side session is gone: the old cookie buys nothing any more.
    refreshed = short_api.with_cookie("POST", "/auth/refresh", cookie, csrf)
    assert refreshed.status_code == 401, refreshed.text
    assert refreshed.json()["code"] == "token_revoked"
    assert short_api.with_cookie("GET", "/auth/csrf", cookie).status_code == 401
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")


# --- CORS ------------------------------------------------------------------------------------


def test_origin_not_on_the_allowlist_is_blocked_and_nothing_happens(
    context: BrowserContext, spa: StaticServer, api: Api
) -> None:
    """The same SPA served from http://localhost:<port> can neither sign up, log in nor create
    a task, and the server holds no trace of any of it."""
    allowed, foreign = spa.origin("127.0.0.1"), spa.origin("localhost")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": ""}
    for origin, expected in ((allowed, allowed), (foreign, None)):
        answer = requests.options(
            api.url("/auth/register"), headers={**preflight, "Origin": origin}, timeout=10
        )
        assert answer.headers.get("Access-Control-Allow-Origin") == expected

    existing = api.register()
    token = api.login(existing)
    newcomer = f"blocked-{time.time_ns()}@example.com"

    page = context.new_page()
    open_spa(page, foreign, api.base)
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    expect(error_box(page)).to_have_attribute("data-code", "network_error")

    page.locator("#signup-email").fill(newcomer)
    page.locator("#signup-password").fill(PASSWORD)
    page.locator("#signup-submit").click()
    expect(error_box(page)).to_have_attribute("data-code", "network_error")
    expect(error_box(page)).to_contain_text("CORS allowlist")
    expect(page.locator("#signup-submit")).to_be_enabled()

    page.locator("#login-email").fill(existing)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-submit").click()
    expect(error_box(page)).to_have_attribute("data-code", "network_error")
    expect(page.locator("#login-submit")).to_be_enabled()

    outcome = page.evaluate(
        """async ([url, token]) => {
            try {
                const headers = {"Content-Type": "application/json",
                                 Authorization: `Bearer ${token}`};
                const body = JSON.stringify({title: "smuggled"});
                await fetch(url, {method: "POST", headers, body});
                return "sent";
            } catch (error) { return error.name; }
        }""",
        [api.url("/tasks"), token],
    )
    assert outcome == "TypeError"

    assert api.try_register(newcomer) == 201  # the blocked sign-up never created it
    assert api.tasks(token) == []
    assert len(api.sessions(token)) == 1  # the blocked login opened none


# --- docs ------------------------------------------------------------------------------------


def test_api_docs_render_every_operation_offline(
    context: BrowserContext, api_server: LiveServer
) -> None:
    """/api/docs shows each operation of the OpenAPI document, loading nothing from elsewhere."""
    document = requests.get(f"{api_server.url}/api/v1/openapi.json", timeout=10).json()
    operations = [
        (method, path, spec["summary"])
        for path, item in document["paths"].items()
        for method, spec in item.items()
    ]
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    docs_url = api_server.url.replace("127.0.0.1", DOCS_HOST) + "/api/docs"
    page.goto(docs_url)

    expect(page.locator(".opblock")).to_have_count(len(operations))
    for method, path, summary in operations:
        block = page.locator(f".opblock-{method}").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )
        expect(block).to_contain_text(summary)
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
    page.wait_for_load_state("networkidle")

    outside = [url for url in requested if _leaves_machine(url)]
    assert requested and outside == [], outside


def _leaves_machine(url: str) -> bool:
    """Whether a request goes anywhere but this machine (data: and blob: URLs stay)."""
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob") and parts.hostname not in LOCAL_HOSTS
