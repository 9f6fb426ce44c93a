// The demo shop: every interaction becomes a clickstream event sent by tracker.js to the collector.
// Query parameters tune the tracker, e.g. ?batchSize=100&flushMs=60000 keeps events queued (tests use it to
// check that closing the page still delivers them).

import config from "./config.js";
import { createTracker } from "./tracker.js";

// The shop's catalogue: the same six products as generator/synthetic.py's PRODUCTS (a test checks).
export const PRODUCTS = [
  { id: 101, name: "Laptop Pro", price: 1299, emoji: "💻" },
  { id: 202, name: "Smartphone X", price: 899, emoji: "📱" },
  { id: 303, name: "Tablet Air", price: 599, emoji: "📲" },
  { id: 404, name: "Wireless Headphones", price: 199, emoji: "🎧" },
  { id: 505, name: "Smart Watch", price: 399, emoji: "⌚" },
  { id: 606, name: "Gaming Mouse", price: 79, emoji: "🖱️" },
];

const PACKAGE_ID = "acme.shop.web";
const LOG_LIMIT = 20;
const TOAST_MS = 4000;
const MARKS = { pending: "⏳", accepted: "✅", rejected: "❌", failed: "💾", beacon: "📤", dropped: "🗑️" };

const $ = (id) => document.getElementById(id);
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const counts = { tracked: 0, accepted: 0, rejected: 0 };

const params = new URLSearchParams(location.search);
const positiveInt = (name) => {
  const value = Number(params.get(name));
  return Number.isInteger(value) && value > 0 ? value : undefined; // undefined: the tracker's default
};

const tracker = createTracker({
  collectorUrl: config.collectorUrl,
  packageId: PACKAGE_ID,
  writeKey: config.writeKey,
  batchSize: positiveInt("batchSize"),
  flushIntervalMs: positiveInt("flushMs"),
  onResult: showResult,
});

// ---- events and the live log ----

function send(type, fields) {
  const event = tracker.track(type, fields);
  counts.tracked += 1;
  logEntry(event);
  updateStatus();
  return event;
}

function describe(event) {
  const { page, query, product_name: name } = event.event;
  return [event.type, page, query && `“${query}”`, name].filter(Boolean).join(" · ");
}

function logEntry(event) {
  const item = document.createElement("li");
  item.dataset.eventId = event.id;
  item.dataset.eventType = event.type;
  const mark = document.createElement("span");
  mark.className = "mark";
  const time = document.createElement("time");
  time.dateTime = event.event.timestamp;
  time.textContent = new Date(event.event.timestamp).toLocaleTimeString();
  const text = document.createElement("span");
  text.className = "what";
  text.textContent = describe(event);
  const reason = document.createElement("span");
  reason.className = "reason";
  item.append(mark, time, text, reason);
  setStatus(item, "pending");
  const log = $("event-log");
  log.prepend(item);
  while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
  return item;
}

function setStatus(item, status, reason) {
  item.dataset.status = status;
  item.querySelector(".mark").textContent = MARKS[status];
  item.querySelector(".mark").title = status;
  const text = reason ?? (status === "beacon" ? "sent on page exit" : "");
  item.querySelector(".reason").textContent = text;
  item.querySelector(".reason").title = text; // the whole reason, when the log shows only its start
}

function showResult(event, { status, reason }) {
  if (status === "accepted") counts.accepted += 1;
  if (status === "rejected") counts.rejected += 1;
  const item = $("event-log").querySelector(`[data-event-id="${event.id}"]`);
  if (item) setStatus(item, status, reason); // else: already scrolled out of the last 20
  updateStatus();
}

function updateStatus() {
  $("count-tracked").textContent = counts.tracked;
  $("count-accepted").textContent = counts.accepted;
  $("count-rejected").textContent = counts.rejected;
  $("count-queued").textContent = tracker.pendingIds.length;
}

// ---- the shop ----

// A confirmation that does not block the page (unlike alert()); it goes away by itself.
function toast(message) {
  const box = document.createElement("p");
  box.className = "toast";
  box.textContent = message;
  $("toast").replaceChildren(box);
  setTimeout(() => box.remove(), TOAST_MS);
}

const productFields = (product) => ({ product_id: product.id, product_name: product.name, price: product.price });

function viewProduct(product) {
  send("view", { page: `/product/${product.id}`, referrer: "/products", ...productFields(product) });
  const dialog = $("product-dialog");
  dialog.dataset.productId = product.id;
  $("dialog-emoji").textContent = product.emoji;
  $("dialog-name").textContent = product.name;
  $("dialog-price").textContent = money.format(product.price);
  dialog.showModal();
}

function buyProduct(product) {
  send("purchase", { page: "/checkout", referrer: `/product/${product.id}`, ...productFields(product) });
  $("product-dialog").close();
  toast(`🎉 Order placed: ${product.name} (${money.format(product.price)}). Thank you!`);
}

function renderProducts(query = "") {
  const needle = query.toLowerCase();
  const shown = PRODUCTS.filter((product) => product.name.toLowerCase().includes(needle));
  const template = $("product-template");
  $("products").replaceChildren(
    ...shown.map((product) => {
      const card = template.content.firstElementChild.cloneNode(true);
      const nameId = `product-${product.id}-name`;
      card.dataset.testid = `product-${product.id}`;
      card.querySelector(".card-emoji").textContent = product.emoji;
      card.querySelector(".card-name").textContent = product.name;
      card.querySelector(".card-name").id = nameId;
      card.querySelector(".price").textContent = money.format(product.price);
      for (const button of card.querySelectorAll("button")) {
        const action = button.dataset.action;
        button.dataset.testid = `${action}-${product.id}`;
        button.setAttribute("aria-describedby", nameId); // "View Details", described by the product's name
        button.addEventListener("click", () => (action === "view" ? viewProduct(product) : buyProduct(product)));
      }
      return card;
    }),
  );
  $("results").textContent = query
    ? `${shown.length} result${shown.length === 1 ? "" : "s"} for “${query}”`
    : `${PRODUCTS.length} products`;
}

$("search-input").closest("form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  const query = $("search-input").value.trim();
  renderProducts(query);
  if (query) send("view", { page: "/products", referrer: "/home", query });
});
// Clearing the box shows everything again (no event: nothing was searched).
$("search-input").addEventListener("input", (input) => {
  if (!input.target.value) renderProducts();
});

const productOf = (dialog) => PRODUCTS.find((product) => product.id === Number(dialog.dataset.productId));
$("dialog-buy").addEventListener("click", () => buyProduct(productOf($("product-dialog"))));
$("dialog-close").addEventListener("click", () => $("product-dialog").close());

$("collector-url").textContent = config.collectorUrl;
renderProducts();
// The landing: the full URL (its campaign parameters, e.g. ?utm_source=newsletter, are the lake's utm_* columns) and
// the page the visitor came from, if any (the tracker's defaults). The shop's own views below name virtual pages.
send("click");

// For tests and the curious: the tracker (customerId, pendingIds, flush) and the logging track().
window.__shop = { tracker, track: send, products: PRODUCTS };
