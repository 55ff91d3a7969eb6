"""The buyer page (`/shop/`) in a real browser: Debian's chromium driven by Playwright, against
the web processes in gunicorn on real Redis (and, for the whole flow, the relay and a Celery
worker projecting into MariaDB, read back through the query API).

The page's test hooks are the contract's (`data-seat`, `data-state`, `data-action`,
`data-field`, `data-order-status`, `data-countdown`, `data-tickets`, `data-message`). Waits
have deadlines; nothing here asserts how long anything took (the 50 × 60 render time is
printed).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from plumbing import settings
from tests.support.browser import chromium
from tests.support.processes import gunicorn, wait_until
from tests.support.tokens import bearer, operator

LONG = 10_000  # ms: a deadline for what the page does on its own
SEEN = 2_000  # ms: another buyer's hold shows on a page within this (polling ~1 s)
# one worker process: it boots in half the CPU of two on the shared cores
SERVER_ENV = {
    "PAYMENT_WEBHOOK_SECRET": settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET,
    "GUNICORN_WORKERS": "1",
}
OPS = operator("box-office")
SEAT_LABEL = re.compile(
    r"^Zone \d+, row [A-Z]+, seat \d+, \d+\.\d\d, (free|picked|held|sold|yours)$"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """The web processes as `make run` serves them (page, purchase, query) in gunicorn, with
    `env`; yields the base URL once the worker answers."""
    with gunicorn({**SERVER_ENV, **env}) as url:
        wait_until(lambda: _answers(f"{url}/purchase/health"), 60, "gunicorn's worker")
        yield url


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5).status_code == 200
    return False


@pytest.fixture(scope="module")
def base_url(database) -> Iterator[str]:
    with serving({}) as url:
        yield url


class Shop:
    """One buyer's page."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base

    def open(self, event: str, zone: int) -> Shop:
        self.page.goto(f"{self.base}/shop/?event={event}&zone={zone}")
        expect(self.page.locator('[data-field="zone"]')).to_have_value(str(zone), timeout=LONG)
        expect(self.page.locator("[data-seat]").first).to_be_visible(timeout=LONG)
        return self

    def login(self, buyer: str) -> Shop:
        self.field("buyer").fill(buyer)
        self.action("login").click()
        expect(self.page.locator("#who")).to_contain_text(buyer, timeout=LONG)
        return self

    def seat(self, zone: int, row: str, column: int) -> Locator:
        return self.page.locator(f'[data-seat="{zone}-{row}-{column}"]')

    def action(self, name: str) -> Locator:
        return self.page.locator(f'[data-action="{name}"]')

    def field(self, name: str) -> Locator:
        return self.page.locator(f'[data-field="{name}"]')

    @property
    def status(self) -> Locator:
        return self.page.locator("[data-order-status]")

    @property
    def message(self) -> Locator:
        return self.page.locator("[data-message]")

    def countdown(self) -> int:
        return int(self.page.locator("[data-countdown]").inner_text())

    def mine(self) -> list[str]:
        return self.page.locator('[data-state="mine"]').evaluate_all(
            "seats => seats.map(s => s.dataset.seat)"
        )


@pytest.fixture
def new_shop(browser: Browser) -> Iterator[Callable[[str], Shop]]:
    """Pages, each in a browser context of its own (its own session storage: its own buyer),
    closed after the test (their keep-alive connections too: gunicorn stops at once)."""
    contexts: list[BrowserContext] = []

    def open_page(base: str) -> Shop:
        contexts.append(browser.new_context())
        return Shop(contexts[-1].new_page(), base)

    yield open_page
    for context in contexts:
        context.close()


def test_whole_flow_log_in_pick_hold_pay_tickets_in_the_query_api(
    new_shop, base_url, pipeline_worker, pipeline_relay, clean_tickets, loaded_seats
):
    # others were there first: two seats sold, two held (an event few other tests use: the
    # session relay runs on after this test, and their seats stay out of each other's way)
    for column in ("1", "2"):
        sale = {"venueId": "Venue2", "eventId": "Event4", "zoneId": 3, "row": "A", "column": column}
        sold = requests.post(f"{base_url}/purchase/api/v1/tickets", json=sale, headers=OPS)
        assert sold.status_code == 201, sold.text
    hold = {
        "venueId": "Venue2",
        "eventId": "Event4",
        "seats": [{"zoneId": 3, "row": "C", "column": c} for c in ("10", "11")],
    }
    other = requests.post(f"{base_url}/purchase/api/v1/orders", json=hold, headers=bearer("other"))
    assert other.status_code == 201, other.text

    shop = new_shop(base_url).open("Event4", 3)
    expect(shop.seat(3, "A", 2)).to_have_attribute("data-state", "sold", timeout=LONG)
    expect(shop.seat(3, "C", 11)).to_have_attribute("data-state", "held", timeout=LONG)
    expect(shop.seat(3, "B", 7)).to_have_attribute(
        "aria-label", "Zone 3, row B, seat 7, 140.00, free"
    )
    shop.login("flow-buyer")
    shop.seat(3, "B", 7).click()
    shop.seat(3, "B", 8).click()
    expect(shop.seat(3, "B", 7)).to_have_attribute("data-state", "picked")
    expect(shop.seat(3, "B", 8)).to_have_attribute("data-state", "picked")

    shop.action("hold").click()
    expect(shop.status).to_contain_text("HELD", timeout=LONG)
    # the map marks them at its next render, a moment after the status
    for column in (7, 8):
        expect(shop.seat(3, "B", column)).to_have_attribute("data-state", "mine", timeout=LONG)
    assert sorted(shop.mine()) == ["3-B-7", "3-B-8"]
    first = shop.countdown()
    assert 0 < first <= settings.get().hold_seconds
    wait_until(lambda: shop.countdown() < first, 5, "the countdown to run")

    if os.environ.get("SHOP_SCREENSHOT"):  # docs/shop.png: SHOP_SCREENSHOT=docs/shop.png
        shop.page.screenshot(path=os.environ["SHOP_SCREENSHOT"], full_page=True)

    shop.action("pay").click()
    expect(shop.status).to_contain_text("PAID", timeout=LONG)
    tickets = shop.page.locator("[data-tickets] li")
    expect(tickets).to_have_count(2)
    expect(shop.page.locator("[data-tickets]")).to_contain_text("row B, seat 7")
    ticket_ids = sorted(tickets.evaluate_all("items => items.map(i => i.dataset.ticket)"))
    assert sorted(shop.mine()) == ["3-B-7", "3-B-8"]  # still the buyer's, sold

    def projected() -> dict | None:
        answer = requests.get(
            f"{base_url}/query/api/v1/me/orders", headers=bearer("flow-buyer"), timeout=10
        )
        paid = [o for o in answer.json() if o["status"] == "PAID"]
        return paid[0] if paid else None

    order = wait_until(projected, 60, "the paid order in the query API")
    assert sorted(s["ticketId"] for s in order["seats"]) == ticket_ids


def test_best_four_together_are_four_adjacent_seats_of_the_buyer_until_cancelled(
    new_shop, base_url, clean_tickets, loaded_seats
):
    shop = new_shop(base_url).open("Event4", 1).login("best-buyer")
    shop.field("quantity").fill("4")
    shop.action("best").click()
    expect(shop.status).to_contain_text("HELD", timeout=LONG)
    expect(shop.page.locator('[data-state="mine"]')).to_have_count(4, timeout=LONG)
    seats = [s.split("-") for s in shop.mine()]
    assert {(zone, row) for zone, row, _ in seats} == {("1", seats[0][1])}  # one row
    columns = sorted(int(column) for _, _, column in seats)
    assert columns == list(range(columns[0], columns[0] + 4))  # side by side

    shop.action("cancel").click()  # and let them go
    expect(shop.status).to_contain_text("CANCELLED", timeout=LONG)
    expect(shop.page.locator('[data-state="mine"]')).to_have_count(0, timeout=LONG)
    for _, row, column in seats:
        expect(shop.seat(1, row, int(column))).to_have_attribute("data-state", "free", timeout=LONG)
    expect(shop.page.locator("[data-countdown]")).to_have_text("–")


def test_two_buyers_one_seat_exactly_one_holds_the_other_sees_it_taken(
    new_shop, base_url, clean_tickets, loaded_seats
):
    a = new_shop(base_url).open("TinyEvent", 3).login("buyer-a")
    b = new_shop(base_url).open("TinyEvent", 3).login("buyer-b")
    for shop in (a, b):
        shop.seat(3, "A", 1).click()
        expect(shop.seat(3, "A", 1)).to_have_attribute("data-state", "picked")
    a.action("hold").click()
    b.action("hold").click()  # both requests are on their way together

    def outcome(shop: Shop) -> str:
        if "HELD" in shop.status.inner_text():
            return "held"
        return "lost" if "taken" in shop.message.inner_text() else ""

    def both() -> tuple[str, str] | None:
        answers = (outcome(a), outcome(b))
        return answers if all(answers) else None

    outcomes = wait_until(both, 10, "both answers")
    assert sorted(outcomes) == ["held", "lost"], outcomes
    winner, loser = (a, b) if outcomes[0] == "held" else (b, a)
    expect(winner.seat(3, "A", 1)).to_have_attribute("data-state", "mine")
    expect(loser.seat(3, "A", 1)).to_have_attribute("data-state", "held", timeout=SEEN)
    expect(loser.message).to_contain_text("taken")

    # a hold the loser's page took no part in shows there too: the page polls the map
    winner.seat(3, "C", 3).click()
    winner.action("hold").click()
    expect(winner.seat(3, "C", 3)).to_have_attribute("data-state", "mine", timeout=LONG)
    expect(loser.seat(3, "C", 3)).to_have_attribute("data-state", "held", timeout=SEEN)


def test_a_hold_that_runs_out_comes_back_free_on_every_page(
    new_shop, database, clean_tickets, loaded_seats
):
    with serving({"HOLD_SECONDS": "3"}) as short_holds:
        a = new_shop(short_holds).open("TinyEvent", 3).login("buyer-a")
        b = new_shop(short_holds).open("TinyEvent", 3)  # only watching
        a.seat(3, "C", 1).click()
        a.action("hold").click()
        expect(a.status).to_contain_text("HELD", timeout=LONG)
        assert 0 < a.countdown() <= 3
        expect(b.seat(3, "C", 1)).to_have_attribute("data-state", "held", timeout=SEEN)

        expect(a.page.locator("[data-countdown]")).not_to_have_text(re.compile(r"[1-9]"))
        expect(a.status).to_contain_text("EXPIRED", timeout=LONG)
        expect(a.message).to_contain_text("expired")
        expect(a.seat(3, "C", 1)).to_have_attribute("data-state", "free", timeout=LONG)
        expect(b.seat(3, "C", 1)).to_have_attribute("data-state", "free", timeout=LONG)
        for shop in (a, b):  # their connections closed: gunicorn stops at once
            shop.page.context.close()


def test_keyboard_only_reach_a_seat_pick_hold_pay(new_shop, base_url, clean_tickets, loaded_seats):
    shop = new_shop(base_url).open("TinyEvent", 3)
    page = shop.page

    def tab_to(selector: str, most: int = 40) -> None:
        for _ in range(most):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('[data-field="buyer"]')
    page.keyboard.type("keys-buyer")
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_contain_text("keys-buyer", timeout=LONG)

    tab_to("[data-seat]")  # one Tab stop for the whole map
    focused = page.locator("[data-seat]:focus")
    assert SEAT_LABEL.match(focused.get_attribute("aria-label") or "")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    expect(page.locator("[data-seat]:focus")).to_have_attribute("data-seat", "3-B-2")
    expect(page.locator("[data-seat]:focus")).to_have_attribute(
        "aria-label", "Zone 3, row B, seat 2, 30.25, free"
    )
    page.keyboard.press("Enter")
    expect(shop.seat(3, "B", 2)).to_have_attribute("data-state", "picked")
    expect(shop.seat(3, "B", 2)).to_have_attribute("aria-label", re.compile(r", picked$"))

    tab_to('[data-action="hold"]')
    page.keyboard.press("Enter")
    expect(shop.status).to_contain_text("HELD", timeout=LONG)
    tab_to('[data-action="pay"]')
    page.keyboard.press("Enter")
    expect(shop.status).to_contain_text("PAID", timeout=LONG)
    expect(page.locator("[data-tickets] li")).to_have_count(1)
    # every seat of the map says what it is
    labels = page.locator("[data-seat]").evaluate_all(
        "seats => seats.map(s => s.getAttribute('aria-label') || '')"
    )
    assert len(labels) == 9 and all(SEAT_LABEL.match(label) for label in labels), labels


def test_a_50_by_60_zone_is_built_once_and_a_sale_touches_one_seat(
    new_shop, base_url, clean_tickets, loaded_seats
):
    shop = new_shop(base_url)
    page = shop.page
    started = time.perf_counter()
    shop.open("Event7", 30)
    expect(page.locator("[data-seat]")).to_have_count(50 * 60, timeout=LONG)
    expect(shop.seat(30, "AX", 60)).to_have_attribute("data-state", "free", timeout=LONG)
    wall = time.perf_counter() - started
    build_ms = page.evaluate("window.shopStats.buildMs")
    print(f"\n50 x 60 zone: page open to 3,000 seats shown {wall * 1000:.0f} ms;", end=" ")
    print(f"its DOM built in {build_ms:.1f} ms")

    # watch the map's DOM, sell one seat behind the page's back, let it poll a few times
    page.evaluate(
        """() => {
            window.touched = new Set();
            const seen = (c) => (c.target.dataset && c.target.dataset.seat) || c.target.id;
            new MutationObserver((changes) => changes.forEach((c) => touched.add(seen(c))))
                .observe(document.querySelector('#map'),
                         {subtree: true, childList: true, attributes: true});
        }"""
    )
    polls = page.evaluate("window.shopStats.polls")
    sale = requests.post(
        f"{base_url}/purchase/api/v1/tickets",
        json={
            "venueId": "Venue5",
            "eventId": "Event7",
            "zoneId": 30,
            "row": "C",
            "column": "7",
        },
        headers=OPS,
        timeout=10,
    )
    assert sale.status_code == 201, sale.text
    expect(shop.seat(30, "C", 7)).to_have_attribute("data-state", "sold", timeout=SEEN)
    wait_until(lambda: page.evaluate("window.shopStats.polls") >= polls + 3, 10, "more polls")
    assert page.evaluate("[...window.touched]") == ["30-C-7"]
