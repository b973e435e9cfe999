/* The check-in station (docs/CHECKIN.md), in the browser: the ticket list and public keys
   downloaded, each scan verified here (Ed25519 by WebCrypto, the convention, the list), shown
   at once and queued in localStorage; the queue is sent to the API's sync route while online.
   Without this script the page's form posts each scan to the server. */
(() => {
  "use strict";

  const root = document.getElementById("station");
  if (!root) return;

  const conventionId = root.dataset.conventionId.toLowerCase();
  const ticketsUrl = root.dataset.ticketsUrl;
  const syncUrl = root.dataset.syncUrl;
  const badgeBase = root.dataset.badgeBase;
  const badgeNames = JSON.parse(root.dataset.badgeNames || "{}");
  const STORE = `butterfly.station.${conventionId}.`;
  const NAME_KEY = "butterfly.station.name";
  const SYNC_EVERY_MS = 3000;
  const LIST_EVERY_MS = 10000;
  const BATCH = 500;
  const OFFLINE_CACHE = "butterfly-station-v1"; // the service worker's cache (station-sw.js)
  const SHOWN = 50;
  const STATION = /^[A-Za-z0-9 _.:-]{1,60}$/;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const REFUSALS = {
    malformed: "This is not a Butterfly ticket.",
    unknown_key: "This ticket was signed with a key we do not know.",
    bad_signature: "This ticket's signature is wrong: forged or altered.",
    wrong_convention: "This ticket is for another convention.",
    revoked: "This ticket was revoked: the registration was cancelled, or transferred since the ticket was issued.",
    replaced: "This ticket was replaced: the registration was transferred since it was issued.",
    not_listed: "This ticket is not on the list: the registration is cancelled, not paid, or unknown.",
    not_paid: "This registration is not paid.",
    unknown_registration: "This convention has no such registration.",
    no_list: "The ticket list is not downloaded yet: connect this station to the network once.",
  };

  const form = document.getElementById("scan-form");
  const stationInput = document.getElementById("f-station");
  const tokenInput = document.getElementById("f-token");
  const result = document.getElementById("scan-result");
  const state = document.getElementById("station-state");
  const networkLine = document.getElementById("station-network");
  const listLine = document.getElementById("station-list");
  const verifyLine = document.getElementById("station-verify");
  const queueSection = document.getElementById("queue-section");
  const queueCount = document.getElementById("queue-count");
  const conflictsSection = document.getElementById("conflicts-section");
  const conflictsList = document.getElementById("conflicts");
  const doneSection = document.getElementById("done-section");
  const doneList = document.getElementById("checked-in");
  const cameraButton = document.getElementById("camera-button");
  const cameraBox = document.getElementById("camera-box");
  const video = document.getElementById("camera");

  // --- storage ------------------------------------------------------------------------------

  function load(key, fallback) {
    try {
      const raw = localStorage.getItem(STORE + key);
      return raw ? JSON.parse(raw) : fallback;
    } catch (error) {
      return fallback;
    }
  }

  function save(key, value) {
    try {
      localStorage.setItem(STORE + key, JSON.stringify(value));
    } catch (error) {
      say(networkLine, "This device's storage is full: scans may be lost if the page is closed.");
    }
  }

  let list = load("list", null); // {keys, tickets, downloaded_at}
  let byId = new Map();
  let queue = load("queue", []); // what the sync route takes, oldest first
  let scans = load("scans", []); // this station's accepted scans, newest first
  let keys = new Map();
  let mode = "pending"; // "signature" or "list"
  let trouble = "";
  let syncing = false;

  // --- small helpers ------------------------------------------------------------------------

  function say(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }

  function unb64(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function b64(bytes) {
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function clock(iso) {
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? "" : moment.toLocaleTimeString();
  }

  function badgeName(code) {
    return badgeNames[code] || code || "";
  }

  function csrfToken() {
    for (const part of document.cookie.split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === "butterfly_csrf") return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  function sameMoment(a, b) {
    return Boolean(a) && Boolean(b) && Date.parse(a) === Date.parse(b);
  }

  // --- the ticket list and keys -------------------------------------------------------------

  function index() {
    byId = new Map((list ? list.tickets : []).map((t) => [String(t.registration_id).toLowerCase(), t]));
  }

  async function importKeys() {
    if (!list) return;
    const imported = new Map();
    try {
      if (!window.crypto || !crypto.subtle) throw new Error("no WebCrypto");
      for (const key of list.keys) {
        imported.set(
          key.kid,
          await crypto.subtle.importKey("raw", unb64(key.public_key), { name: "Ed25519" }, false, ["verify"]),
        );
      }
      keys = imported;
      mode = "signature";
    } catch (error) {
      keys = new Map();
      mode = "list";
    }
  }

  async function download() {
    let response;
    try {
      response = await fetch(ticketsUrl, {
        credentials: "same-origin",
        cache: "no-cache",
        headers: { Accept: "application/json" },
      });
    } catch (error) {
      render();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      trouble = "You are no longer logged in as staff: log in again to download the list and send scans.";
      render();
      return;
    }
    if (!response.ok) {
      render();
      return;
    }
    const body = await response.json();
    if (String(body.convention_id).toLowerCase() !== conventionId) return;
    list = { keys: body.keys, tickets: body.tickets, downloaded_at: new Date().toISOString() };
    save("list", list);
    index();
    await importKeys();
    findSuperseded();
    render();
  }

  function findSuperseded() {
    // A scan sent and checked in, then replaced by an earlier one (an offline station's):
    // the list names the winning scan.
    let changed = false;
    for (const scan of scans) {
      if (scan.state !== "sent") continue;
      const entry = byId.get(scan.registration_id);
      if (!entry || !entry.checked_in_at) continue;
      if (entry.checked_in_station === scan.station && sameMoment(entry.checked_in_at, scan.scanned_at)) continue;
      scan.state = "conflict";
      scan.note = `Superseded: an earlier scan at ${entry.checked_in_station} (${clock(entry.checked_in_at)}) checked this attendee in.`;
      changed = true;
    }
    if (changed) save("scans", scans);
  }

  // --- checking one scan --------------------------------------------------------------------

  function parse(token) {
    const parts = token.split(".");
    if (token.length > 600 || parts.length !== 3 || parts[0] !== "BT1") return null;
    try {
      const raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(unb64(parts[1])));
      const signature = unb64(parts[2]);
      if (b64(signature) !== parts[2]) return null;
      const claims = {
        r: String(raw.r).toLowerCase(),
        c: String(raw.c).toLowerCase(),
        b: String(raw.b),
        s: raw.s,
        k: String(raw.k),
      };
      if (!UUID.test(claims.r) || !UUID.test(claims.c) || !Number.isInteger(claims.s)) return null;
      return { claims, signature, signed: new TextEncoder().encode(`${parts[0]}.${parts[1]}`) };
    } catch (error) {
      return null;
    }
  }

  async function check(token) {
    if (!list) return { refused: "no_list" };
    const parsed = parse(token);
    if (!parsed) return { refused: "malformed" };
    const { claims } = parsed;
    if (mode === "signature") {
      const key = keys.get(claims.k);
      if (!key) return { refused: "unknown_key" };
      let good = false;
      try {
        good = await crypto.subtle.verify({ name: "Ed25519" }, key, parsed.signature, parsed.signed);
      } catch (error) {
        good = false;
      }
      if (!good) return { refused: "bad_signature" };
    } else if (!list.keys.some((key) => key.kid === claims.k)) {
      return { refused: "unknown_key" };
    }
    if (claims.c !== conventionId) return { refused: "wrong_convention" };
    const entry = byId.get(claims.r);
    if (!entry) return { refused: "not_listed" };
    if (entry.serial !== claims.s) return { refused: claims.s < entry.serial ? "replaced" : "not_listed" };
    const here = scans.find((scan) => scan.registration_id === claims.r && scan.state !== "conflict");
    if (here) {
      return { refused: "here", entry, detail: `Already checked in here at ${clock(here.scanned_at)}.` };
    }
    if (entry.checked_in_at) {
      return {
        refused: "elsewhere",
        entry,
        detail: `Already checked in at ${entry.checked_in_station || "another station"} at ${clock(entry.checked_in_at)}.`,
      };
    }
    return { entry, claims };
  }

  function show(kind, verdict, lines, link) {
    result.className = `scan-result ${kind}`;
    result.replaceChildren();
    const head = document.createElement("p");
    head.className = "scan-verdict";
    head.textContent = verdict;
    result.append(head);
    for (const [cls, text] of lines) {
      if (!text) continue;
      const p = document.createElement("p");
      p.className = cls;
      p.textContent = text;
      result.append(p);
    }
    const moment = document.createElement("p");
    moment.className = "scan-when";
    moment.textContent = `Scanned at ${new Date().toLocaleTimeString()}`;
    result.append(moment);
    if (link) result.append(link);
  }

  function badgeLink(scan) {
    const a = document.createElement("a");
    a.href = `${badgeBase}/${scan.registration_id}/badge.pdf`;
    a.target = "_blank";
    a.rel = "noopener";
    a.append("Print badge");
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = ` for ${scan.name}`;
    a.append(hidden, " (PDF, opens in a new tab)");
    return a;
  }

  function stationName() {
    const name = stationInput.value.trim();
    const error = document.getElementById("f-station-error");
    if (STATION.test(name)) {
      if (error) error.remove();
      stationInput.removeAttribute("aria-invalid");
      stationInput.closest(".field").classList.remove("invalid");
      return name;
    }
    if (!error) {
      const p = document.createElement("p");
      p.className = "error";
      p.id = "f-station-error";
      stationInput.closest(".field").append(p);
    }
    document.getElementById("f-station-error").textContent = name
      ? "The station name may have letters, digits, spaces and . _ : - only, 60 at most."
      : "Name this station first: its scans are recorded under its name.";
    stationInput.setAttribute("aria-invalid", "true");
    stationInput.setAttribute("aria-describedby", "f-station-error f-station-hint");
    stationInput.closest(".field").classList.add("invalid");
    stationInput.focus();
    return null;
  }

  async function scanned(raw) {
    const token = raw.trim();
    if (!token) return;
    const station = stationName();
    if (!station) return;
    const checked = await check(token);
    if (checked.refused) {
      const entry = checked.entry;
      const already = checked.refused === "here" || checked.refused === "elsewhere";
      show("bad", already ? "Already checked in" : "Refused", [
        ["scan-name", entry ? entry.name : ""],
        ["scan-badge", entry ? badgeName(entry.badge_type) : ""],
        ["scan-detail", checked.detail || REFUSALS[checked.refused] || "This ticket does not admit anyone."],
      ]);
      return;
    }
    const { entry, claims } = checked;
    const scan = {
      scan_id: newId(),
      registration_id: claims.r,
      name: entry.name,
      badge_type: entry.badge_type,
      station,
      scanned_at: new Date().toISOString(),
      state: "queued",
    };
    queue.push({ token, station, scanned_at: scan.scanned_at, scan_id: scan.scan_id });
    scans.unshift(scan);
    save("queue", queue);
    save("scans", scans);
    show("ok", "Checked in", [
      ["scan-name", entry.name],
      ["scan-badge", badgeName(entry.badge_type)],
    ], badgeLink(scan));
    render();
    sync();
  }

  // --- sending the queue --------------------------------------------------------------------

  function describe(answer) {
    if (answer.status === 409) {
      const where = answer.checked_in_station || "another station";
      const at = answer.checked_in_at ? ` (${clock(answer.checked_in_at)})` : "";
      return answer.superseded
        ? `Superseded: an earlier scan at ${where}${at} checked this attendee in.`
        : `Already checked in elsewhere: at ${where}${at}.`;
    }
    if (answer.reason === "revoked") return "Revoked since the list was downloaded: cancelled, or transferred.";
    if (answer.reason && REFUSALS[answer.reason]) return REFUSALS[answer.reason];
    return answer.detail || answer.title || `Refused (${answer.status}).`;
  }

  function settle(results) {
    const done = new Set();
    for (const answer of results) {
      if (answer.status === 202) continue; // being decided: sent again, decided once
      done.add(answer.scan_id);
      const scan = scans.find((s) => s.scan_id === answer.scan_id);
      if (!scan) continue;
      if (answer.status === 201) {
        scan.state = "sent";
      } else {
        scan.state = "conflict";
        scan.note = describe(answer);
      }
    }
    queue = queue.filter((q) => !done.has(q.scan_id));
    save("queue", queue);
    save("scans", scans);
  }

  async function sync() {
    if (syncing || !queue.length || !navigator.onLine) {
      render();
      return;
    }
    syncing = true;
    try {
      const response = await fetch(syncUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ scans: queue.slice(0, BATCH) }),
      });
      if (response.ok) {
        const body = await response.json();
        settle(body.results || []);
        trouble = "";
      } else if (response.status === 401 || response.status === 403) {
        trouble = "The server refused the scans: log in again as staff; the scans are kept until then.";
      } else {
        trouble = `The server could not take the scans just now (${response.status}): they are kept and sent again.`;
      }
    } catch (error) {
      trouble = "";
    } finally {
      syncing = false;
    }
    render();
    if (queue.length && !trouble && navigator.onLine) setTimeout(sync, 500);
  }

  // --- what the page shows ------------------------------------------------------------------

  function item(scan) {
    const li = document.createElement("li");
    const who = document.createElement("strong");
    who.textContent = scan.name;
    li.append(who, ` · ${badgeName(scan.badge_type)} · ${clock(scan.scanned_at)}`);
    if (scan.state === "conflict") {
      li.append(document.createElement("br"), scan.note || "");
    } else {
      li.append(` · ${scan.state === "queued" ? "waiting to be sent" : "sent"} · `, badgeLink(scan));
    }
    return li;
  }

  function render() {
    state.hidden = false;
    const online = navigator.onLine;
    const waiting = queue.length;
    if (trouble) {
      say(networkLine, trouble);
    } else if (!online) {
      say(networkLine, "Offline: scans are checked against the downloaded list and kept on this device; they are sent when the network is back.");
    } else {
      say(networkLine, "Online: scans are sent as they are made.");
    }
    state.classList.toggle("offline", !online || Boolean(trouble));
    say(listLine, list
      ? `Ticket list: ${list.tickets.length} ${list.tickets.length === 1 ? "ticket" : "tickets"}, downloaded at ${clock(list.downloaded_at)}.`
      : "The ticket list is not downloaded yet.");
    say(verifyLine, mode === "list"
      ? "This browser cannot check ticket signatures (no Ed25519 in WebCrypto): tickets are trusted by the downloaded list (registration, serial and convention) only."
      : mode === "signature" ? "Ticket signatures are checked on this device." : "");
    verifyLine.classList.toggle("warning", mode === "list");
    queueSection.hidden = false;
    say(queueCount, waiting
      ? `${waiting} ${waiting === 1 ? "scan" : "scans"} waiting to be sent.`
      : "Every scan is sent.");
    const conflicts = scans.filter((s) => s.state === "conflict");
    conflictsSection.hidden = conflicts.length === 0;
    conflictsList.replaceChildren(...conflicts.slice(0, SHOWN).map(item));
    const accepted = scans.filter((s) => s.state !== "conflict");
    doneSection.hidden = accepted.length === 0;
    doneList.replaceChildren(...accepted.slice(0, SHOWN).map(item));
  }

  // --- the camera -----------------------------------------------------------------------------

  let stream = null;
  let lastSeen = { value: "", at: 0 };

  async function watch(detector) {
    while (stream) {
      try {
        const codes = await detector.detect(video);
        const value = codes.length ? codes[0].rawValue : "";
        const now = Date.now();
        if (value && (value !== lastSeen.value || now - lastSeen.at > 3000)) {
          lastSeen = { value, at: now };
          await scanned(value);
        } else if (value) {
          lastSeen.at = now;
        }
      } catch (error) {
        // a frame the detector could not read
      }
      await new Promise((done) => setTimeout(done, 200));
    }
  }

  function stopCamera() {
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.srcObject = null;
    cameraBox.hidden = true;
    cameraButton.textContent = "Scan with the camera";
  }

  async function startCamera() {
    try {
      const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      video.srcObject = stream;
      cameraBox.hidden = false;
      await video.play();
      cameraButton.textContent = "Stop the camera";
      watch(detector);
    } catch (error) {
      stopCamera();
      show("bad", "Camera unavailable", [["scan-detail", "The camera could not be opened: use the scanner or type the ticket."]]);
    }
  }

  // --- wiring -----------------------------------------------------------------------------------

  if (!stationInput.value) stationInput.value = localStorage.getItem(NAME_KEY) || "";
  stationInput.addEventListener("change", () => {
    if (STATION.test(stationInput.value.trim())) localStorage.setItem(NAME_KEY, stationInput.value.trim());
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = tokenInput.value;
    tokenInput.value = "";
    if (stationName()) {
      localStorage.setItem(NAME_KEY, stationInput.value.trim());
      scanned(token).finally(() => tokenInput.focus());
    } else {
      tokenInput.value = token;
    }
  });

  if ("BarcodeDetector" in window && navigator.mediaDevices) {
    cameraButton.hidden = false;
    cameraButton.addEventListener("click", () => (stream ? stopCamera() : startCamera()));
  }

  window.addEventListener("online", () => {
    trouble = "";
    render();
    sync();
    download();
  });
  window.addEventListener("offline", render);

  index();
  render();
  importKeys().then(() => {
    findSuperseded();
    render();
    download();
  });
  setInterval(sync, SYNC_EVERY_MS);
  setInterval(() => {
    if (navigator.onLine) download();
  }, LIST_EVERY_MS);

  if ("serviceWorker" in navigator && root.dataset.serviceWorker) {
    navigator.serviceWorker.register(root.dataset.serviceWorker, { scope: "/staff/" }).catch(() => {});
    // What the worker answers with when there is no network: this page as the server made
    // it while online (its list and queue live in localStorage), its script and styles.
    if ("caches" in window && navigator.onLine) {
      caches
        .open(OFFLINE_CACHE)
        .then((cache) => cache.addAll([location.pathname, "/static/station.js", "/static/butterfly.css"]))
        .catch(() => {});
    }
  }
})();
