// A small clickstream tracker: builds events that match schemas/acme.clickstream.raw.events.json, sends them
// to the collector's POST /collect in batches, reports what became of each event, and hands whatever is still
// queued to navigator.sendBeacon when the page goes away.
//
//   import { createTracker } from "./tracker.js";
//   const tracker = createTracker({ collectorUrl, packageId: "acme.shop.web", onResult: (event, outcome) => … });
//   tracker.track("view", { page: "/product/101", product_id: 101, product_name: "Laptop Pro", price: 1299 });
//
// outcome.status is "accepted", "rejected" (the collector said why: outcome.reason), "failed" (this page gave up
// after maxRetries), "beacon" (handed to the browser on page exit: nobody can read the answer) or "dropped"
// (pushed out of the stored queue by newer events).
//
// The queue is kept in localStorage until the collector answers each event: events a page could not send
// (the collector unreachable, retries given up, the tab closed) and those handed to a beacon, whose answer no
// page can see, are sent again on the next page view of the site. Event ids make a resend harmless: the lake
// deduplicates on them. The stored queue is bounded (maxStoredEvents, maxStoredBytes); the oldest events go
// first, counted under DROPPED_KEY. Tabs of one site share it: each merges its queue into what is stored.

const CUSTOMER_KEY = "acme.clickstream.customer_id";
const QUEUE_KEY = "acme.clickstream.queue";
const DROPPED_KEY = "acme.clickstream.dropped";
// Ids the collector answered, remembered so that no tab stores them again; a bound keeps it small.
const SETTLED_MEMORY = 10_000;
// text/plain is a CORS-safelisted type: no preflight for fetch, and the only JSON sendBeacon can send
// cross-origin. The collector accepts it.
const CONTENT_TYPE = "text/plain;charset=UTF-8";
// Browsers cap the bodies of keepalive fetches and beacons in flight (64 KiB in Chromium); stay under it.
const KEEPALIVE_BYTES = 60_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

// crypto.randomUUID exists only in secure contexts (https, localhost); the shop's S3 website is plain http on
// another host name, so build the same random (version 4) UUID from getRandomValues, which exists everywhere.
function uuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Storage may be missing or throw (blocked cookies, sandboxed frames): the tracker then works without it.
function defaultStorage() {
  try {
    return globalThis.localStorage;
  } catch {
    return null;
  }
}

function read(storage, key) {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function write(storage, key, value) {
  try {
    storage?.setItem(key, value);
  } catch {
    // not persisted: the events still go out while the page lives
  }
}

const byteLength = (text) => new Blob([text]).size;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function createTracker({
  collectorUrl,
  packageId,
  writeKey = null, // the source's public write key, sent as ?key= (sendBeacon cannot set headers)
  batchSize = 10,
  flushIntervalMs = 2000,
  maxRetries = 5,
  maxStoredEvents = 1000,
  maxStoredBytes = 1_000_000,
  storage = defaultStorage(),
  onResult = () => {},
}) {
  const base = `${collectorUrl.replace(/\/+$/, "")}/collect`;
  const url = writeKey ? `${base}?key=${encodeURIComponent(writeKey)}` : base;

  // One anonymous id per browser (per site), kept across visits.
  let customerId = read(storage, CUSTOMER_KEY);
  if (!customerId) {
    customerId = uuid();
    write(storage, CUSTOMER_KEY, customerId);
  }

  // Events not yet answered, oldest first. The first `inFlight` of them are in a request right now.
  // Those an earlier page left unanswered go first.
  const queue = loadStored();
  const settled = new Set();
  let inFlight = 0;
  let pumping = null; // the promise of the send loop while it runs: one request at a time keeps the order
  let timer = null;

  const report = (event, status, reason = null) => {
    try {
      onResult(event, { status, reason });
    } catch (error) {
      console.error("tracker: onResult failed", error);
    }
  };

  function loadStored() {
    try {
      const stored = JSON.parse(read(storage, QUEUE_KEY) ?? "[]");
      return Array.isArray(stored) ? stored.filter((event) => typeof event?.id === "string") : [];
    } catch {
      return []; // unreadable: start afresh rather than never sending again
    }
  }

  // Merge this page's queue into the stored one: what another tab (or an earlier attempt of this page) stored
  // stays unless the collector answered it here; then the bounds, oldest out first.
  function persist() {
    if (!storage) return;
    const mine = new Set(queue.map((event) => event.id));
    const kept = [...loadStored().filter((event) => !mine.has(event.id) && !settled.has(event.id)), ...queue];
    let bytes = byteLength(JSON.stringify(kept));
    let dropped = 0;
    while (kept.length && (kept.length > maxStoredEvents || bytes > maxStoredBytes)) {
      const event = kept.shift();
      bytes -= byteLength(JSON.stringify(event)) + 1;
      dropped += 1;
      report(event, "dropped", "the stored queue is full: the oldest events go first");
    }
    if (dropped) write(storage, DROPPED_KEY, String(Number(read(storage, DROPPED_KEY) || 0) + dropped));
    write(storage, QUEUE_KEY, JSON.stringify(kept));
  }

  function markSettled(events) {
    for (const event of events) settled.add(event.id);
    for (const id of settled) {
      if (settled.size <= SETTLED_MEMORY) break;
      settled.delete(id);
    }
  }

  function track(type, fields = {}) {
    // Trimmed to the schema's limits, so an odd browser cannot make its every event invalid.
    const details = {
      user_agent: navigator.userAgent.slice(0, 1024),
      customer_id: customerId,
      timestamp: new Date().toISOString(), // UTC with a "Z": what the schema asks for
      page: location.href.slice(0, 2048),
      referrer: document.referrer.slice(0, 2048) || null,
    };
    // The schema allows no other keys, and undefined is not JSON: drop fields left out.
    for (const [key, value] of Object.entries(fields)) if (value !== undefined) details[key] = value;
    const event = { id: uuid(), type, package_id: packageId, event: details };
    queue.push(event);
    persist();
    if (queue.length - inFlight >= batchSize) flush();
    else if (!timer) timer = setTimeout(flush, flushIntervalMs);
    return event;
  }

  // Send everything queued now, batch after batch; resolves when the queue is empty (or given up on).
  function flush() {
    clearTimeout(timer);
    timer = null;
    pumping ??= (async () => {
      while (queue.length) await sendHead();
    })().finally(() => {
      pumping = null;
    });
    return pumping;
  }

  // Sends the batch at the head of the queue until the collector answers it or retries run out.
  async function sendHead() {
    for (let attempt = 0; ; attempt += 1) {
      // Taken afresh each time: a beacon may have emptied the queue while we waited to retry.
      const batch = queue.slice(0, batchSize);
      if (!batch.length) return;
      const body = JSON.stringify(batch);
      let failure;
      let retryAfterMs = 0;
      inFlight = batch.length;
      try {
        const response = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": CONTENT_TYPE },
          body,
          // keepalive lets the request finish if the page closes meanwhile (within the browser's budget).
          keepalive: byteLength(body) <= KEEPALIVE_BYTES,
        });
        if (response.status < 500 && response.status !== 429) {
          // Answered: 2xx and 4xx say per event what happened; sending them again would change nothing.
          // A 429 (past the key's rate) is retried like a 5xx, after its Retry-After.
          const answer = await response.json().catch(() => ({}));
          queue.splice(0, batch.length);
          inFlight = 0;
          settle(batch, response.status, answer);
          persist();
          return;
        }
        failure = `HTTP ${response.status}`;
        retryAfterMs = Number(response.headers.get("Retry-After")) * 1000 || 0;
      } catch (error) {
        failure = `network error (${error.message})`; // also what a CORS refusal looks like
      }
      inFlight = 0;
      if (attempt >= maxRetries) {
        // This page stops trying; the events stay stored, for the next page view.
        queue.splice(0, batch.length);
        const kept = storage ? "; kept for the next page view" : "";
        for (const event of batch) report(event, "failed", `gave up after ${attempt + 1} attempts: ${failure}${kept}`);
        return;
      }
      // Exponential backoff with jitter, so many pages do not come back at the same instant.
      const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
      await sleep(Math.max(backoff, retryAfterMs));
    }
  }

  // Per-event outcome from the collector's answer: {status, errors: [{index, id, reason}], message}.
  function settle(batch, statusCode, answer) {
    const reasons = new Map((answer.errors ?? []).map((error) => [error.index, error.reason]));
    if (statusCode === 413 && reasons.size) {
      // Some events are too large and nothing was accepted: drop those, send the others again first.
      const others = batch.filter((_, index) => !reasons.has(index));
      queue.unshift(...others);
      markSettled(batch.filter((_, index) => reasons.has(index)));
      batch.forEach((event, index) => reasons.has(index) && report(event, "rejected", reasons.get(index)));
      return;
    }
    markSettled(batch);
    const whole = statusCode >= 400 && !reasons.size; // the whole body was refused
    const message = answer.message ?? `HTTP ${statusCode}`;
    batch.forEach((event, index) => {
      if (whole) report(event, "rejected", message);
      else if (reasons.has(index)) report(event, "rejected", reasons.get(index));
      else report(event, "accepted");
    });
  }

  // The page is going away (or hidden, which on mobile may be the last chance): hand what is queued and not
  // in a request already to the browser, which sends it even after the page is gone.
  function flushOnExit() {
    clearTimeout(timer);
    timer = null;
    const pending = queue.slice(inFlight);
    let handed = 0;
    while (handed < pending.length) {
      const chunk = [];
      let bytes = 2;
      for (const event of pending.slice(handed)) {
        const size = byteLength(JSON.stringify(event)) + 1;
        if (chunk.length && bytes + size > KEEPALIVE_BYTES) break;
        chunk.push(event);
        bytes += size;
      }
      const blob = new Blob([JSON.stringify(chunk)], { type: CONTENT_TYPE });
      // Refused when over the browser's budget: the rest stays queued (sent if the page comes back).
      if (!navigator.sendBeacon(url, blob)) break;
      handed += chunk.length;
      for (const event of chunk) report(event, "beacon");
    }
    // Out of this page's queue, but still stored (not settled): no page can see a beacon's answer, so the
    // next page view sends them again.
    queue.splice(inFlight, handed);
    persist();
  }

  if (queue.length) timer = setTimeout(flush, 0); // what an earlier page left, at once

  addEventListener("pagehide", flushOnExit);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flushOnExit();
  });
  return {
    track,
    flush,
    customerId,
    /** Ids of the events not answered yet, oldest first. */
    get pendingIds() {
      return queue.map((event) => event.id);
    },
  };
}
