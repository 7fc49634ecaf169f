// chestlens offline screener: service worker. `chestlens export web` replaces the build id below, so a
// new build (new models) is a new worker with a new cache; the old cache is deleted when it activates.
const BUILD = "__CHESTLENS_BUILD__";
const PREFIX = "chestlens-offline-";
const CACHE = PREFIX + BUILD;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const index = await (await fetch("models.json", { cache: "no-store" })).json();
    const cache = await caches.open(CACHE);
    await cache.addAll(index.files.map((file) => new Request(file, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

// Cross-origin isolation (COOP/COEP) lets onnxruntime-web use threads; adding the headers here makes
// that work on static hosts that do not send them (everything the page loads is same-origin).
function isolated(response) {
  if (!response || response.status === 0 || response.type === "opaque") return response;
  const headers = new Headers(response.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  headers.set("Cross-Origin-Resource-Policy", "same-origin");
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(request, { ignoreSearch: true });
    if (hit) return isolated(hit);
    try {
      return isolated(await fetch(request));
    } catch (error) {
      if (request.mode === "navigate") {
        const page = await cache.match("./");
        if (page) return isolated(page);
      }
      throw error;
    }
  })());
});
