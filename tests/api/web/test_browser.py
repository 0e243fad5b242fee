"""End to end in a real browser: Debian's chromium driven by Playwright against `localize serve` (API + worker).

A user signs in, labels 25 texts with the keyboard, the automatic retraining runs and its new version appears
with its figures, "try it" highlights words, another user's pages do not exist for them, and the admin sees the
agreement heat map. Every page is saved as a screenshot: in the test's temporary folder, or in reports/ui/ (the
screenshots the README links) with ``LOCALIZE_UPDATE_SCREENSHOTS=1``, so a test run leaves the repository as it was.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localize.bench.server import child_env, free_port, localize_command, running_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ADMIN_KEY = "browser-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REPORTED_SCREENSHOTS = Path(__file__).resolve().parents[3] / "reports" / "ui"
LABELS = ["personal", "work"]  # keys 1 and 2
_SCRATCH = Path(tempfile.gettempdir()) / f"localize-screenshots-{os.getpid()}"

_VENDORS = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli",
            "Vandelay Industries", "Soylent", "Tyrell Corp"]
_PLACES = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery", "the lake",
           "the museum", "the ice rink", "the market"]
WORK = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(_VENDORS)] + \
       [f"Quarterly VAT payment to supplier {v}" for v in _VENDORS]
PERSONAL = [f"Dinner with my family at {p}" for p in _PLACES] + \
           [f"Birthday present for my sister, bought at {p}" for p in _PLACES]
CROWD_TEXTS = [text for pair in zip(WORK[:12], PERSONAL[:12]) for text in pair]
POOL = WORK[12:] + PERSONAL[12:]


def truth(text: str) -> str:
    return "work" if text in WORK else "personal"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium package"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    home = tmp_path_factory.mktemp("web")
    env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY, LOCALIZE_WORKER_POLL_SECONDS="0.2")
    with running_server(localize_command("serve", "--port", str(port)), env, port, log_path=home / "server.log") as url:
        yield url  # stopped afterwards with the worker it started


@pytest.fixture(scope="module")
def keys(server: str) -> dict[str, str]:
    """Task ``notes``: three crowd users labelled 24 texts (Cy files two of them the other way), the pool holds
    16 more, it retrains a user after 25 new labels, and Mia, the learner, has labelled nothing yet."""
    with httpx.Client(base_url=server, timeout=60, headers=ADMIN) as client:
        assert client.post("/tasks", json={"name": "notes", "labels": LABELS}).status_code == 201
        found = {}
        for name in ("ann", "ben", "cy", "mia"):
            assert client.post("/users", json={"name": name}).status_code == 201
            found[name] = client.post(f"/users/{name}/keys").json()["api_key"]
        for name in ("ann", "ben", "cy"):
            rows = [{"text": text, "label": truth(text)} for text in CROWD_TEXTS]
            if name == "cy":
                for row in rows[:2]:
                    row["label"] = "personal" if row["label"] == "work" else "work"
            assert client.post(f"/tasks/notes/users/{name}/labels", json={"labels": rows}).status_code == 200
        assert client.post("/tasks/notes/texts", json={"texts": POOL}).json()["added"] == len(POOL)
        # Retrain after 25 labels (the default is 20): 25 of these texts hold some out for validation figures.
        assert client.put("/tasks/notes/retraining", json={"retrain_every": 25}).status_code == 200
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


# Every visible form control and link must have an accessible name (a label, aria-label(ledby) or its text).
_UNNAMED_CONTROLS = """() => {
  const named = (el) => el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")
    || (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest("label")
    || (["BUTTON", "A"].includes(el.tagName) && el.textContent.trim());
  return [...document.querySelectorAll(
      "input:not([type=hidden]), textarea, select, button, a[href], progress, meter, svg[role=img]")]
    .filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""


def _shot(page, name: str) -> None:
    """Saves the page's screenshot, after checking that every control on it has an accessible name."""
    assert page.evaluate(_UNNAMED_CONTROLS) == [], name
    folder = REPORTED_SCREENSHOTS if os.environ.get("LOCALIZE_UPDATE_SCREENSHOTS") == "1" else _SCRATCH
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _sign_in(page, server: str, key: str) -> None:
    page.goto(f"{server}/")
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")


def test_a_user_labels_with_the_keyboard_retrains_and_explores_their_model(server, keys, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    _shot(page, "signin")
    _sign_in(page, server, keys["mia"])
    expect(page.get_by_role("heading", name="mia's tasks")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "localize_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
    _shot(page, "home")

    page.get_by_role("link", name="Label notes").click()
    expect(page.get_by_role("heading", name="Text to label")).to_be_visible()
    _shot(page, "label")
    progress = page.locator("#progress-text")
    text = page.locator("#current-text")

    # s skips a text and u brings it back.
    skipped = text.inner_text()
    page.keyboard.press("s")
    expect(page.get_by_text("Skipped.")).to_be_visible()
    page.keyboard.press("u")
    expect(text).to_have_text(skipped)

    def answer(count: int) -> None:
        page.keyboard.press(str(LABELS.index(truth(text.inner_text())) + 1))
        expect(progress).to_contain_text(f"{count} of 40 texts labelled")

    for answered in range(1, 26):
        answer(answered)
        if answered == 1:
            expect(page.get_by_role("status").filter(has_text="You said")).to_be_visible()
            _shot(page, "label-answered")
    expect(page.get_by_text("your model is retraining")).to_be_visible()  # the task retrains every 25 labels
    status = page.locator("#retrain-status")
    expect(status).to_contain_text("Version 1 is live", timeout=60_000)  # polled live while the job runs
    figures = r"validation accuracy\s+\d+\.\d%,\s+macro-F1\s+\d\.\d{3}\s+on\s+[1-9]\d*\s+validation rows\s+\(25 labels\)"
    expect(status).to_contain_text(re.compile(figures))
    # The next answer shows the new version's guess, after the answer.
    answer(26)
    expect(page.get_by_role("status").filter(has_text="Your model (version 1) had guessed")).to_be_visible()
    _shot(page, "label-retrained")

    page.get_by_role("link", name="My model").click()
    expect(page.get_by_role("heading", name="Active version")).to_be_visible()
    figures = page.locator("dl.figures")
    expect(figures).to_contain_text("Validation macro-F1")
    expect(page.get_by_role("img", name="Validation figures of mia's versions in notes")).to_be_visible()
    expect(page.get_by_role("cell", name="active")).to_be_visible()
    _shot(page, "model")

    page.get_by_role("link", name="Try it").click()
    page.get_by_role("textbox", name="Text to classify").fill("Invoice 999 from Initech for office printer paper")
    page.keyboard.press("Tab")  # to the button, then Enter: the keyboard alone is enough
    expect(page.get_by_role("button", name="Classify and explain")).to_be_focused()
    page.keyboard.press("Enter")
    highlighted = page.get_by_test_id("highlighted")
    expect(highlighted.locator("mark").first).to_be_visible(timeout=30_000)
    assert highlighted.locator("mark").count() == 8
    expect(page.get_by_role("heading", name="Your model")).to_be_visible()
    expect(page.locator(".answer").first).to_have_text("work")
    _shot(page, "try")

    for path in ("/u/ann", "/u/ann/tasks/notes/label", "/u/ann/tasks/notes/model", "/admin"):
        response = page.goto(f"{server}{path}")
        assert response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    _shot(page, "not-found")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server}/u/mia/tasks/notes/label")
    expect(page.get_by_role("heading", name="Text to label")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _shot(page, "label-phone")
    context.close()


def test_the_admin_sees_users_jobs_pools_and_the_agreement_heat_map(server, keys, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    _sign_in(page, server, ADMIN_KEY)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(page.get_by_role("rowheader", name="notes")).to_be_visible()
    _shot(page, "admin-tasks")

    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("rowheader", name="ann")).to_be_visible()
    _shot(page, "admin-users")
    page.get_by_role("link", name="Jobs").click()
    _shot(page, "admin-jobs")
    if page.get_by_role("link", name="Job 1").count():
        page.get_by_role("link", name="Job 1").click()
        expect(page.get_by_role("heading", name="Events")).to_be_visible()
        _shot(page, "admin-job")
    page.get_by_role("link", name="Text pools").click()
    expect(page.get_by_text("40 texts in all: 16 uploaded")).to_be_visible()
    _shot(page, "admin-pools")

    page.get_by_role("link", name="Tasks").click()
    page.get_by_role("link", name="Agreement in notes").click()
    expect(page.get_by_role("heading", name="Krippendorff's alpha")).to_be_visible()
    expect(page.get_by_role("img", name="Agreement between each pair of users in notes")).to_be_visible()
    expect(page.get_by_role("rowheader", name="cy")).to_be_visible()
    _shot(page, "admin-agreement")
    context.close()
