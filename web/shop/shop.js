// The buyer page (docs/shop.md): pick an event and zone, watch the seat map, pick seats or ask
// for the best N together, hold them with a countdown, pay, see the tickets.
//
// The seat map is polled (GET …/zones/{z}/seats about once a second) rather than pushed: the
// purchase service keeps each map answer per process for SEAT_MAP_CACHE_MS, so however many
// pages poll, each process asks Redis at most once per period; a push channel would need a
// long-lived connection per buyer through the load balancer and a fan-out of its own.
// The map is built once per zone (one DOM build); each poll then touches only the seats whose
// state changed.
"use strict";

(() => {
  const API = "/purchase/api/v1";
  const QUERY = "/query/api/v1";
  const POLL_MS = 1000;
  const MAX_PICK = 8; // MAX_SEATS_PER_ORDER's default: the server has the last word
  const WORDS = { free: "free", picked: "picked", held: "held", sold: "sold", mine: "yours" };

  const $ = (selector) => document.querySelector(selector);
  const ui = {
    login: $("#login"),
    buyer: $('[data-field="buyer"]'),
    who: $("#who"),
    event: $('[data-field="event"]'),
    zone: $('[data-field="zone"]'),
    remaining: $("#remaining"),
    map: $("#map"),
    picked: $("#picked"),
    quantity: $('[data-field="quantity"]'),
    hold: $('[data-action="hold"]'),
    best: $('[data-action="best"]'),
    pay: $('[data-action="pay"]'),
    cancel: $('[data-action="cancel"]'),
    status: $("[data-order-status]"),
    countdown: $("[data-countdown]"),
    tickets: $("[data-tickets]"),
    message: $("[data-message]"),
    announce: $("#announce"),
  };

  const state = {
    token: null,
    buyer: null,
    events: [],
    venues: new Map(), // venueId → venue (zones with prices), read once
    event: null,
    zone: null,
    rows: [], // the last seat map: one string per row, "0" free, "h" held, "1" sold
    cells: [], // the seat buttons, row by row
    shown: [], // the state each button shows
    picked: new Set(), // seat keys "zone-row-column"
    orders: new Map(), // this buyer's orders seen here, by id
    current: null, // the order the panel shows
    clockOffset: 0, // server clock − browser clock, ms (from the answers, see noteClock)
    focus: 0, // the seat that takes the Tab focus (roving tabindex)
    generation: 0, // bumped on each zone change: late answers for another zone are dropped
    pollTimer: null,
    polling: false,
    pollAgain: false,
    tick: null,
    nextExpiryCheck: 0,
    warned: null,
    expiring: false,
  };
  window.shopStats = { buildMs: null, seats: 0, polls: 0 };

  // --- HTTP

  function uuid4() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16)); // outside a secure context
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  async function call(method, path, { body, auth = false, key = null } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
    if (key) headers["Idempotency-Key"] = key;
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        });
      } catch (error) {
        return { status: 0, ok: false, data: { detail: "The server cannot be reached." } };
      }
      noteClock(response.headers.get("Date"));
      let data = null;
      try {
        data = await response.json();
      } catch (error) {
        data = null;
      }
      // 503 OUTCOME_UNKNOWN: the change may stand; the same Idempotency-Key tells.
      if (response.status === 503 && key && attempt < 3) {
        await sleep(1000 * Number(response.headers.get("Retry-After") || 1));
        continue;
      }
      if (response.status === 401 && auth) signedOut("Your sign-in has expired: sign in again.");
      return { status: response.status, ok: response.ok, data };
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The server's clock: an order's createdOn is the server's time when it answered (Redis TIME),
  // the Date header of any answer the same to the second. The countdown runs on it, not on the
  // browser's clock alone.
  function noteClock(dateHeader, exact = null) {
    if (exact !== null) {
      state.clockOffset = exact - Date.now();
      state.exactClock = true;
    } else if (dateHeader && !state.exactClock) {
      const at = Date.parse(dateHeader);
      if (!Number.isNaN(at)) state.clockOffset = at + 500 - Date.now();
    }
  }
  const serverNow = () => Date.now() + state.clockOffset;

  // --- messages

  function say(text) {
    ui.announce.textContent = "";
    ui.announce.textContent = text;
  }
  function problem(text) {
    ui.message.textContent = text;
  }
  function detail(answer, fallback) {
    return (answer.data && answer.data.detail) || fallback;
  }

  // --- signing in

  function buyerOf(token) {
    try {
      const payload = atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"));
      const bytes = Uint8Array.from(payload, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes)).sub || "buyer";
    } catch (error) {
      return "buyer";
    }
  }

  function signedIn(token, buyer) {
    state.token = token;
    state.buyer = buyer;
    sessionStorage.setItem("shop.token", token);
    ui.who.textContent = `Signed in as ${buyer}.`;
    ui.buyer.value = buyer;
    updateControls();
    restoreOrders();
  }

  function signedOut(text) {
    state.token = null;
    state.buyer = null;
    sessionStorage.removeItem("shop.token");
    ui.who.textContent = "";
    problem(text);
    updateControls();
  }

  function tokenFromFragment() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const token =
      fragment.get("token") || fragment.get("access_token") || fragment.get("id_token");
    if (token) history.replaceState(null, "", window.location.pathname + window.location.search);
    return token;
  }

  async function login(event) {
    event.preventDefault();
    problem("");
    if (typeof window.SHOP_TOKEN_PROVIDER === "function") {
      try {
        const token = await window.SHOP_TOKEN_PROVIDER();
        if (token) signedIn(token, buyerOf(token));
      } catch (error) {
        problem("Signing in failed.");
      }
      return;
    }
    const name = ui.buyer.value.trim();
    if (!name) {
      problem("Type a buyer name to sign in.");
      ui.buyer.focus();
      return;
    }
    const answer = await call("POST", `${API}/dev-login`, { body: { buyer: name } });
    if (answer.status === 404) {
      problem("This deployment signs buyers in through its identity provider.");
    } else if (!answer.ok) {
      problem(detail(answer, "Signing in failed."));
    } else {
      signedIn(answer.data.token, answer.data.buyer);
      say(`Signed in as ${answer.data.buyer}.`);
    }
  }

  // --- catalog

  async function loadEvents() {
    const answer = await call("GET", `${QUERY}/events`);
    if (!answer.ok) {
      problem(detail(answer, "The events cannot be read."));
      return;
    }
    state.events = answer.data;
    ui.event.replaceChildren(
      ...state.events.map((e) => new Option(`${e.name} (${e.date.slice(0, 10)})`, e.eventId)),
    );
    const wanted = new URLSearchParams(window.location.search);
    if (wanted.get("event") && state.events.some((e) => e.eventId === wanted.get("event"))) {
      ui.event.value = wanted.get("event");
    }
    await chooseEvent(wanted.get("zone"));
  }

  async function venue(venueId) {
    if (!state.venues.has(venueId)) {
      const answer = await call("GET", `${QUERY}/venues/${encodeURIComponent(venueId)}`);
      if (!answer.ok) throw new Error(detail(answer, "The venue cannot be read."));
      state.venues.set(venueId, answer.data);
    }
    return state.venues.get(venueId);
  }

  async function chooseEvent(zoneWanted = null) {
    problem("");
    state.event = state.events.find((e) => e.eventId === ui.event.value) || null;
    if (!state.event) return;
    let place;
    try {
      place = await venue(state.event.venueId);
    } catch (error) {
      problem(error.message);
      return;
    }
    ui.zone.replaceChildren(
      ...place.zones.map((z) => new Option(`Zone ${z.zoneId} (${z.price})`, String(z.zoneId))),
    );
    if (zoneWanted && place.zones.some((z) => String(z.zoneId) === zoneWanted)) {
      ui.zone.value = zoneWanted;
    }
    renderOrder();
    await chooseZone();
  }

  async function chooseZone() {
    problem("");
    const place = state.venues.get(state.event.venueId);
    state.zone = place.zones.find((z) => String(z.zoneId) === ui.zone.value) || null;
    state.picked.clear();
    state.generation += 1;
    state.rows = [];
    ui.map.replaceChildren();
    updatePicked();
    if (state.zone) await poll();
  }

  // --- the seat map

  function rowLabel(index) {
    let label = "";
    for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) {
      label = String.fromCharCode(65 + ((n - 1) % 26)) + label;
    }
    return label;
  }

  const seatKey = (zoneId, row, column) => `${zoneId}-${row}-${column}`;

  function build(rows, columns) {
    const started = performance.now();
    const zoneId = state.zone.zoneId;
    const grid = document.createDocumentFragment();
    state.cells = new Array(rows * columns);
    state.shown = new Array(rows * columns).fill("");
    ui.map.style.setProperty("--columns", columns);
    for (let r = 0; r < rows; r += 1) {
      const label = rowLabel(r);
      const line = document.createElement("div");
      line.className = "row";
      line.setAttribute("role", "group");
      line.setAttribute("aria-label", `Row ${label}`);
      const name = document.createElement("span");
      name.className = "row-label";
      name.setAttribute("aria-hidden", "true");
      name.textContent = label;
      line.append(name);
      for (let c = 0; c < columns; c += 1) {
        const seat = document.createElement("button");
        seat.type = "button";
        seat.className = "seat";
        seat.tabIndex = -1;
        seat.dataset.seat = seatKey(zoneId, label, c + 1);
        seat.seatIndex = r * columns + c;
        seat.seatRow = label;
        seat.seatColumn = c + 1;
        state.cells[r * columns + c] = seat;
        line.append(seat);
      }
      grid.append(line);
    }
    ui.map.replaceChildren(grid);
    state.focus = Math.min(state.focus, state.cells.length - 1);
    state.cells[state.focus].tabIndex = 0;
    window.shopStats.buildMs = performance.now() - started;
    window.shopStats.seats = state.cells.length;
  }

  function mySeats() {
    const mine = new Set();
    for (const order of state.orders.values()) {
      if (state.event && order.eventId !== state.event.eventId) continue;
      if (order.status !== "HELD" && order.status !== "PAID") continue;
      for (const s of order.seats) mine.add(seatKey(s.zoneId, s.row, s.column));
    }
    return mine;
  }

  // Each seat's state from the map, the picks and this buyer's orders; only changed seats are
  // touched. Picked seats someone else took meanwhile are dropped, and the buyer is told.
  function render() {
    if (!state.zone || state.rows.length === 0) return;
    const columns = state.zone.columns;
    const mine = mySeats();
    const lost = [];
    for (let i = 0; i < state.cells.length; i += 1) {
      const seat = state.cells[i];
      const key = seat.dataset.seat;
      const cell = state.rows[Math.floor(i / columns)][i % columns];
      let shown;
      if (mine.has(key) && cell !== "0") shown = "mine";
      else if (cell === "1") shown = "sold";
      else if (cell === "h") shown = "held";
      else shown = state.picked.has(key) ? "picked" : "free";
      if (cell !== "0" && state.picked.has(key) && shown !== "mine") {
        state.picked.delete(key);
        lost.push(`${seat.seatRow}${seat.seatColumn}`);
      }
      if (shown !== state.shown[i]) show(seat, shown);
    }
    if (lost.length) {
      problem(`Seat ${lost.join(", ")} was just taken by another buyer: pick another.`);
      updatePicked();
    }
  }

  function show(seat, shown) {
    state.shown[seat.seatIndex] = shown;
    seat.dataset.state = shown;
    seat.setAttribute(
      "aria-label",
      `Zone ${state.zone.zoneId}, row ${seat.seatRow}, seat ${seat.seatColumn}, ` +
        `${state.zone.price}, ${WORDS[shown]}`,
    );
    seat.setAttribute("aria-pressed", shown === "picked" ? "true" : "false");
    seat.setAttribute("aria-disabled", shown === "free" || shown === "picked" ? "false" : "true");
  }

  // One poll at a time: a poll asked for while one is on its way runs right after it.
  async function poll() {
    clearTimeout(state.pollTimer);
    if (state.polling) {
      state.pollAgain = true;
      return;
    }
    state.polling = true;
    try {
      await readMap();
    } finally {
      state.polling = false;
    }
    if (state.pollAgain) {
      state.pollAgain = false;
      poll();
      return;
    }
    state.pollTimer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  async function readMap() {
    if (!state.event || !state.zone) return;
    const generation = state.generation;
    const { eventId } = state.event;
    const answer = await call(
      "GET",
      `${API}/events/${encodeURIComponent(eventId)}/zones/${state.zone.zoneId}/seats`,
    );
    if (generation !== state.generation) return; // another zone was chosen meanwhile
    window.shopStats.polls += 1;
    if (answer.ok) {
      const map = answer.data;
      if (state.cells.length !== map.rows * map.columns || ui.map.childElementCount === 0) {
        state.zone = { ...state.zone, rows: map.rows, columns: map.columns };
        build(map.rows, map.columns);
      }
      state.rows = map.seats;
      ui.remaining.textContent = `${map.remaining.zone} seats left in this zone.`;
      render();
    } else if (answer.status !== 0) {
      problem(detail(answer, "The seat map cannot be read."));
    }
  }

  function pollSoon() {
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(poll, 0);
  }

  function pick(seat) {
    const shown = state.shown[seat.seatIndex];
    const name = `Row ${seat.seatRow}, seat ${seat.seatColumn}`;
    if (shown === "picked") {
      state.picked.delete(seat.dataset.seat);
    } else if (shown === "free") {
      if (state.picked.size >= MAX_PICK) {
        problem(`At most ${MAX_PICK} seats in one order.`);
        return;
      }
      state.picked.add(seat.dataset.seat);
    } else {
      say(`${name} is ${WORDS[shown]}.`);
      return;
    }
    problem("");
    show(seat, state.picked.has(seat.dataset.seat) ? "picked" : "free");
    updatePicked();
  }

  function moveFocus(to) {
    const target = state.cells[to];
    if (!target) return;
    state.cells[state.focus].tabIndex = -1;
    state.focus = to;
    target.tabIndex = 0;
    target.focus();
  }

  function keys(event) {
    const seat = event.target.closest(".seat");
    if (!seat || !state.zone) return;
    const columns = state.zone.columns;
    const at = seat.seatIndex;
    const rowStart = at - (at % columns);
    const moves = {
      ArrowLeft: at % columns > 0 ? at - 1 : at,
      ArrowRight: at % columns < columns - 1 ? at + 1 : at,
      ArrowUp: at - columns,
      ArrowDown: at + columns,
      Home: rowStart,
      End: rowStart + columns - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const to = moves[event.key];
    if (to >= 0 && to < state.cells.length) moveFocus(to);
  }

  // --- orders

  function rememberOrder(order) {
    state.orders.set(order.orderId, order);
    state.current = order;
    const ids = [...state.orders.keys()].slice(-20);
    sessionStorage.setItem(`shop.orders.${state.buyer}`, JSON.stringify(ids));
  }

  async function restoreOrders() {
    const ids = JSON.parse(sessionStorage.getItem(`shop.orders.${state.buyer}`) || "[]");
    for (const id of ids) {
      const answer = await call("GET", `${API}/orders/${encodeURIComponent(id)}`, { auth: true });
      if (answer.ok) rememberOrder(answer.data);
    }
    renderOrder();
    render();
  }

  function seatNames(order) {
    return order.seats.map((s) => `zone ${s.zoneId} row ${s.row} seat ${s.column}`).join(", ");
  }

  async function holdSeats(body, what) {
    problem("");
    const answer = await call("POST", `${API}/orders`, { body, auth: true, key: uuid4() });
    if (answer.status === 201) {
      noteClock(null, Date.parse(answer.data.createdOn));
      rememberOrder(answer.data);
      state.picked.clear();
      updatePicked();
      renderOrder();
      render();
      say(`Held ${seatNames(answer.data)}: ${answer.data.total} ${answer.data.currency}.`);
    } else if (answer.data && answer.data.code === "SEAT_TAKEN") {
      const taken = (answer.data.seats || []).map((s) => `${s.row}${s.column}`);
      for (const s of answer.data.seats || []) state.picked.delete(seatKey(s.zoneId, s.row, s.column));
      updatePicked();
      problem(
        `Seat ${taken.join(", ") || what} was just taken by another buyer: pick another.`,
      );
    } else if (answer.status !== 401) {
      problem(detail(answer, "The seats could not be held."));
    }
    pollSoon();
  }

  function holdPicked() {
    if (!state.picked.size) return;
    const seats = [...state.picked].map((key) => {
      const [zoneId, row, column] = key.split("-");
      return { zoneId: Number(zoneId), row, column };
    });
    holdSeats(
      { venueId: state.event.venueId, eventId: state.event.eventId, seats },
      "you picked",
    );
  }

  function holdBest() {
    const quantity = Number(ui.quantity.value);
    if (!Number.isInteger(quantity) || quantity < 1) {
      problem("Ask for 1 seat or more.");
      return;
    }
    holdSeats(
      {
        venueId: state.event.venueId,
        eventId: state.event.eventId,
        zoneId: state.zone.zoneId,
        quantity,
      },
      "",
    );
  }

  async function pay() {
    const order = state.current;
    if (!order || order.status !== "HELD") return;
    problem("");
    ui.pay.disabled = true;
    const answer = await call("POST", `${API}/test-payments`, {
      body: { orderId: order.orderId },
      auth: true,
    });
    if (answer.ok) {
      rememberOrder(answer.data);
      say(`Paid: ${answer.data.seats.length} tickets.`);
    } else if (answer.status === 404 && answer.data && answer.data.code === "NOT_FOUND") {
      problem("This deployment has no test payments: pay through the payment provider.");
    } else if (answer.status !== 401) {
      problem(detail(answer, "The payment failed."));
      await refreshOrder(order.orderId);
    }
    renderOrder();
    render();
    pollSoon();
  }

  async function cancel() {
    const order = state.current;
    if (!order || order.status !== "HELD") return;
    problem("");
    ui.cancel.disabled = true;
    const answer = await call("POST", `${API}/orders/${encodeURIComponent(order.orderId)}/cancel`, {
      auth: true,
    });
    if (answer.ok) {
      rememberOrder(answer.data);
      say("Hold cancelled: the seats are free again.");
    } else if (answer.status !== 401) {
      problem(detail(answer, "The hold could not be cancelled."));
      await refreshOrder(order.orderId);
    }
    renderOrder();
    render();
    pollSoon();
  }

  async function refreshOrder(orderId) {
    const answer = await call("GET", `${API}/orders/${encodeURIComponent(orderId)}`, {
      auth: true,
    });
    if (answer.ok) rememberOrder(answer.data);
    return answer;
  }

  // At the end of the countdown the page asks for its order again: that read expires a due
  // hold (the seats are free for everyone at once), whether or not a sweeper got there first.
  async function holdEnded() {
    if (state.expiring) return;
    state.expiring = true;
    try {
      const order = state.current;
      for (let attempt = 0; attempt < 10 && order; attempt += 1) {
        const answer = await refreshOrder(order.orderId);
        if (!answer.ok || answer.data.status !== "HELD") break;
        await sleep(500); // the server's clock is not there yet
      }
      if (state.current && state.current.status === "EXPIRED") {
        problem("Your hold expired: the seats are free again.");
      }
      renderOrder();
      render();
      pollSoon();
    } finally {
      state.expiring = false;
    }
  }

  function secondsLeft(order) {
    return Math.max(0, Math.ceil((Date.parse(order.expiresAt) - serverNow()) / 1000));
  }

  function countdown() {
    const order = state.current;
    if (!order || order.status !== "HELD") {
      clearInterval(state.tick);
      state.tick = null;
      ui.countdown.textContent = "–";
      return;
    }
    const left = secondsLeft(order);
    if (ui.countdown.textContent !== String(left)) ui.countdown.textContent = String(left);
    if (left <= 60 && state.warned !== order.orderId && left > 0) {
      state.warned = order.orderId;
      say("One minute left to pay.");
    }
    if (left === 0 && Date.now() >= state.nextExpiryCheck) {
      state.nextExpiryCheck = Date.now() + 2000;
      holdEnded();
    }
  }

  function renderOrder() {
    const order = state.current;
    if (!order) {
      ui.status.textContent = "No order yet.";
    } else {
      ui.status.textContent =
        `Order ${order.orderId.slice(0, 8)}: ${order.status}, ${order.seats.length} ` +
        `seat${order.seats.length === 1 ? "" : "s"} (${seatNames(order)}), ` +
        `${order.total} ${order.currency}.`;
    }
    if (order && order.status === "HELD" && !state.tick) {
      state.tick = setInterval(countdown, 250);
    }
    countdown();
    const tickets = [];
    for (const paid of state.orders.values()) {
      if (paid.status !== "PAID") continue;
      for (const s of paid.seats) {
        const item = document.createElement("li");
        item.dataset.ticket = s.ticketId;
        item.textContent =
          `Zone ${s.zoneId}, row ${s.row}, seat ${s.column}, ${s.price} ${paid.currency} ` +
          `(ticket ${s.ticketId})`;
        tickets.push(item);
      }
    }
    ui.tickets.replaceChildren(...tickets);
    updateControls();
  }

  function updatePicked() {
    const names = [...state.picked].map((key) => key.split("-").slice(1).join(""));
    ui.picked.textContent = names.length
      ? `Picked: ${names.join(", ")}.`
      : "No seats picked.";
    updateControls();
  }

  function updateControls() {
    const signed = Boolean(state.token);
    const held = Boolean(state.current && state.current.status === "HELD");
    ui.hold.disabled = !signed || state.picked.size === 0;
    ui.best.disabled = !signed || !state.zone;
    ui.pay.disabled = !signed || !held;
    ui.cancel.disabled = !signed || !held;
  }

  // --- wiring

  ui.login.addEventListener("submit", login);
  ui.event.addEventListener("change", () => chooseEvent());
  ui.zone.addEventListener("change", () => chooseZone());
  ui.map.addEventListener("click", (event) => {
    const seat = event.target.closest(".seat");
    if (seat) pick(seat);
  });
  ui.map.addEventListener("keydown", keys);
  ui.map.addEventListener("focusin", (event) => {
    const seat = event.target.closest(".seat");
    if (seat && seat.seatIndex !== state.focus) {
      state.cells[state.focus].tabIndex = -1;
      state.focus = seat.seatIndex;
      seat.tabIndex = 0;
    }
  });
  ui.hold.addEventListener("click", holdPicked);
  ui.best.addEventListener("click", holdBest);
  ui.pay.addEventListener("click", pay);
  ui.cancel.addEventListener("click", cancel);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollSoon();
  });

  const token = tokenFromFragment() || sessionStorage.getItem("shop.token");
  if (token) signedIn(token, buyerOf(token));
  updateControls();
  loadEvents();
})();
