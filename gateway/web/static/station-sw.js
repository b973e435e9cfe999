/* The check-in station's service worker: keeps the station page, its script and the
   stylesheet, so a station reloaded without network still opens (its list and queue are in
   localStorage). Network first: online, the page is always the server's. */
"use strict";

const CACHE = "butterfly-station-v1";
const PAGE = /^\/staff\/conventions\/[0-9a-f-]{36}\/station$/;
const ASSETS = new Set(["/static/station.js", "/static/butterfly.css"]);

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const page = request.mode === "navigate" && PAGE.test(url.pathname);
  if (!page && !ASSETS.has(url.pathname)) return;
  event.respondWith(networkFirst(request, url.origin + url.pathname));
});

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && !response.redirected) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const kept = await cache.match(key);
    if (kept) return kept;
    throw error;
  }
}
