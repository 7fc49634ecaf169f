// chestlens page: upload, show a result with toggleable layers, poll series jobs, list the worklist, and
// browse the slices of a CT series result (slice browser, below).
// Client file names stay in this browser tab (sessionStorage); the server never stores them.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const LAYERS = ["heatmap", "lungs", "lesions"];
const localNames = JSON.parse(sessionStorage.getItem("chestlens-names") || "{}");
const objectUrls = [];

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text) { $("status").textContent = text; }

async function problemText(response) {
  try {
    const body = await response.json();
    return `${body.title || response.status}: ${body.detail || ""}`;
  } catch (_error) {
    return `HTTP ${response.status}`;
  }
}

async function getJson(url) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(await problemText(response));
  return response.json();
}

async function blobUrl(url) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(await problemText(response));
  const made = URL.createObjectURL(await response.blob());
  objectUrls.push(made);
  return made;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(list, items) {
  list.replaceChildren(...items.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
}

async function upload(files, label) {
  const form = new FormData();
  for (const file of files) form.append("file", file, "upload");
  $("progress").hidden = true;
  setStatus(`Uploading ${label}…`);
  const response = await fetch(`${API}/screenings`, { method: "POST", body: form, headers: headers() });
  if (response.status === 202) {
    const job = await response.json();
    localNames[job.id] = label;
    return pollJob(job.id, label);
  }
  if (!response.ok) { setStatus(`Not screened: ${await problemText(response)}`); return; }
  const screening = await response.json();
  remember(screening.id, label);
  await show(screening);
  setStatus(`Screened ${label}.`);
  refreshHistory();
}

function remember(id, label) {
  localNames[id] = label;
  sessionStorage.setItem("chestlens-names", JSON.stringify(localNames));
}

async function pollJob(jobId, label) {
  const bar = $("progress");
  bar.hidden = false;
  for (;;) {
    const job = await getJson(`${API}/jobs/${jobId}`);
    bar.value = job.progress;
    setStatus(`${label}: ${job.stage} (${Math.round(job.progress * 100)}%)`);
    if (job.status === "done") {
      remember(job.screening_id, label);
      await show(await getJson(job.screening_url));
      setStatus(`Screened series ${label}.`);
      bar.hidden = true;
      refreshHistory();
      return;
    }
    if (job.status === "failed") { setStatus(`Series ${label} failed: ${job.error}`); bar.hidden = true; return; }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function show(screening) {
  while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
  const result = screening.result;
  const overlays = screening.overlays;
  const twoD = "image" in overlays;
  $("stack").hidden = !twoD;
  $("toggles").hidden = !twoD;
  if (twoD) {
    $("layer-image").src = await blobUrl(overlays.image);
    for (const name of LAYERS) {
      const img = $(`layer-${name}`);
      const box = $(`toggle-${name}`);
      box.disabled = !(name in overlays);
      if (name in overlays) img.src = await blobUrl(overlays[name]);
      img.hidden = !(name in overlays) || !box.checked;
    }
  }
  $("summary-box").hidden = twoD;
  $("layer-summary").hidden = twoD;
  if (!twoD) $("layer-summary").src = await blobUrl(overlays.summary);
  await showSlices(screening);
  $("summary-link").href = await blobUrl(overlays.summary);
  $("json-link").href = `${API}/screenings/${screening.id}`;

  const gate = result.gate;
  $("gate").textContent = `${gate.accepted ? "Accepted" : "REJECTED"} (${gate.image_type.replace("_", " ")}): ${gate.reason}`;
  $("gate").className = gate.accepted ? "" : "rejected";
  fill($("gate-checks"), gate.checks.map((c) => `${c.passed ? "✓" : "✗"} ${c.name}: ${c.detail}`));

  const body = $("probabilities").querySelector("tbody");
  body.replaceChildren();
  const classification = result.classification;
  if (classification) {
    const points = Object.fromEntries(classification.decisions.map((d) => [d.label, d]));
    for (const [label, p] of Object.entries(classification.probabilities)) {
      const row = document.createElement("tr");
      row.dataset.label = label;
      row.dataset.probability = String(p);
      cell(row, label);
      cell(row, p.toFixed(3), "num");
      const point = points[label];
      cell(row, point ? `${point.threshold.toFixed(3)} (${point.criterion})` : "—");
      cell(row, point ? (point.positive ? "POSITIVE" : "negative") : "—", point && point.positive ? "positive" : "");
      body.appendChild(row);
    }
  }
  $("classification").hidden = !classification; // a CT without a classifier: no empty heading
  $("meaning").textContent = (classification && classification.meaning) || "";
  $("meaning").hidden = !(classification && classification.meaning);
  const explanation = result.explanation;
  $("explanation").textContent = explanation
    ? `${explanation.method} for ${explanation.target_label}` +
      (explanation.energy_in_lungs === null ? "" : `: ${(explanation.energy_in_lungs * 100).toFixed(0)}% of the heatmap inside the lungs`)
    : "";

  const measures = [];
  if (result.lungs) {
    if (result.lungs.area_mm2 !== null) measures.push(["lung area", `${result.lungs.area_mm2.toFixed(0)} mm²`]);
    measures.push(["lung share of the image", `${(result.lungs.area_fraction * 100).toFixed(1)}%`]);
    if (result.lungs.volume_ml !== null && result.lungs.volume_ml !== undefined) measures.push(["lung volume", `${result.lungs.volume_ml.toFixed(0)} mL`]);
  }
  const lesions = result.lesions;
  if (lesions) {
    measures.push(["lesion segmentation", lesions.gate]);
    for (const [k, v] of Object.entries(lesions.area_mm2_by_label)) measures.push([`${k} area`, `${v.toFixed(0)} mm²`]);
    for (const [k, v] of Object.entries(lesions.volume_ml_by_label)) measures.push([`${k} volume`, `${v.toFixed(1)} mL`]);
    for (const [k, v] of Object.entries(lesions.lung_fraction_by_label)) measures.push([`${k} share of lungs`, `${(v * 100).toFixed(1)}%`]);
  }
  $("measurements").replaceChildren(...measures.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
  const lesionBody = $("lesions").querySelector("tbody");
  lesionBody.replaceChildren();
  for (const lesion of lesions ? lesions.lesions : []) {
    const row = document.createElement("tr");
    cell(row, lesion.label);
    cell(row, lesion.area_mm2 === null ? "—" : lesion.area_mm2.toFixed(0), "num");
    cell(row, String(lesion.area_pixels), "num");
    cell(row, lesion.score.toFixed(2), "num");
    const volume = lesion.volume_ml === null || lesion.volume_ml === undefined ? "—" : lesion.volume_ml.toFixed(2);
    cell(row, volume, "num");
    const span = cell(row, lesion.slices ? `${lesion.slices[0]}–${lesion.slices[1]} (largest ${lesion.slice_index})` : "—", "num");
    if (lesion.slices && slices.n) {
      const go = document.createElement("button");
      go.type = "button";
      go.textContent = "show";
      go.setAttribute("aria-label", `Show slice ${lesion.slice_index + 1}, the largest cross-section of this ${lesion.label} lesion`);
      go.addEventListener("click", () => { setSlice(lesion.slice_index); $("slice-view").focus(); });
      span.append(" ", go);
    }
    lesionBody.appendChild(row);
  }
  $("lesions").hidden = !(lesions && lesions.lesions.length);
  const models = [result.classification, result.lungs, result.lesions]
    .map((part) => part && part.model).filter(Boolean)
    .map((m) => `${m.name} ${m.version} (${m.kind}, sha256 ${m.weights_sha256.slice(0, 12)})`);
  fill($("models"), [...models, `chestlens ${result.chestlens_version}, result schema ${result.schema_version}`]);
  fill($("notes"), [...result.input.warnings.map((w) => `reader warning: ${w}`), ...result.notes]);
  $("result").hidden = false;
  $("result").focus();
}

// ------------------------------------------------------------------------------ slice browser (CT series)
// A series result names its slices (screening.slices): a JSON index (per slice its position, lung area,
// lesion area per class, lesion score and the layers that show something on it) and one PNG per slice and
// layer, drawn by the server from what it kept at screening time: the grey image (lung window), the lung
// contour and the lesion regions, the last two transparent and of the image's size. The canvas stacks the
// layers that are switched on; each PNG is fetched once (a few hundred kept here, and in the HTTP cache).
// A series stored before the server kept slices has no index: the overview strip is shown instead.
const LESION_COLOURS = { ground_glass_opacity: "rgb(255,200,0)", ggo: "rgb(255,200,0)", consolidation: "rgb(230,30,30)", pneumothorax: "rgb(230,30,30)" };
const FALLBACK_COLOURS = ["rgb(0,160,255)", "rgb(200,0,200)", "rgb(255,120,0)"];
const LUNG_COLOUR = "rgb(0,220,0)";
const OVERLAYS = ["lungs", "lesions"];
const KEEP_PNGS = 300;
const slices = { n: 0, index: 0, result: null, info: null, cache: new Map(), token: 0, drawn: 0 };
window.chestlensSliceBrowser = slices; // for tests and the console

/** chestlens.pipeline.overlay's colour of lesion class k (1-based, in the segmenter's label order). */
function lesionColour(label, k) { return LESION_COLOURS[label] || FALLBACK_COLOURS[k % FALLBACK_COLOURS.length]; }

function swatch(colour, text) {
  const li = document.createElement("li");
  const box = document.createElement("span");
  box.className = "swatch";
  box.style.background = colour;
  box.setAttribute("aria-hidden", "true");
  li.append(box, ` ${text}`);
  return li;
}

async function showSlices(screening) {
  const token = ++slices.token;
  slices.drawn++; // a slice of the previous result still loading is not drawn
  const links = screening.slices;
  Object.assign(slices, { n: 0, index: 0, result: screening.result, info: null, cache: new Map() });
  $("slice-browser").hidden = !links;
  $("summary-box").open = !links;
  if (!links) return;
  const info = await getJson(links.url);
  if (token !== slices.token) return;
  Object.assign(slices, { n: info.count, info });
  $("slice-slider").max = String(info.count - 1);
  for (const name of OVERLAYS) {
    const box = $(`slice-${name}`);
    box.disabled = !info.layers.includes(name);
    box.checked = !box.disabled;
    box.parentElement.title = box.disabled ? `This result has no ${name === "lungs" ? "lung mask" : "lesion segmentation"}.` : "";
  }
  const legend = [];
  if (info.layers.includes("lungs")) legend.push(swatch(LUNG_COLOUR, "lung contour"));
  info.lesion_labels.forEach((label, j) => legend.push(swatch(lesionColour(label, j + 1), label.replaceAll("_", " "))));
  $("slice-legend").replaceChildren(...legend);
  $("slice-source").textContent = `${info.count} slices of ${info.cols} × ${info.rows} pixels from the server, lung window ` +
    "(centre −600 HU, width 1500 HU), with the lung contour and the lesion regions the screening found on each slice.";
  setSlice(Math.floor((info.count - 1) / 2));
}

/** The PNG of one layer of slice k as an ImageBitmap (a promise, fetched once). */
function sliceLayer(k, layer) {
  const key = `${k}/${layer}`;
  if (!slices.cache.has(key)) {
    const cache = slices.cache;
    const url = slices.info.template.replace("{k}", String(k)).replace("{layer}", layer);
    const loaded = fetch(url, { headers: headers() }).then(async (response) => {
      if (!response.ok) throw new Error(await problemText(response));
      return createImageBitmap(await response.blob());
    });
    loaded.catch(() => cache.delete(key)); // a failed fetch is tried again next time
    cache.set(key, loaded);
    if (cache.size > KEEP_PNGS) cache.delete(cache.keys().next().value);
  }
  return slices.cache.get(key);
}

function setSlice(k) {
  if (!slices.n) return;
  k = Math.max(0, Math.min(slices.n - 1, Math.round(k)));
  slices.index = k;
  const slider = $("slice-slider");
  slider.value = String(k);
  slider.setAttribute("aria-valuetext", `slice ${k + 1} of ${slices.n}`);
  $("slice-label").textContent = `${k + 1} of ${slices.n}`;
  guard(drawSlice());
  describeSlice(k);
}

/** Stack the image and the overlays switched on for the current slice; the latest call wins. */
async function drawSlice() {
  const k = slices.index;
  const token = ++slices.drawn;
  const facts = slices.info.slices[k];
  const shown = OVERLAYS.filter((name) => $(`slice-${name}`).checked && facts.layers.includes(name));
  const canvas = $("slice-canvas");
  canvas.dataset.busy = "true";
  let pictures;
  try {
    pictures = await Promise.all(["image", ...shown].map((layer) => sliceLayer(k, layer)));
  } catch (error) {
    if (token === slices.drawn) {
      canvas.dataset.busy = "false";
      canvas.dataset.image = "none";
      canvas.setAttribute("aria-label", `CT slice ${k + 1} of ${slices.n} (image not available)`);
    }
    throw new Error(`slice ${k + 1}: ${error.message}`);
  }
  if (token !== slices.drawn) return;
  canvas.width = slices.info.cols;
  canvas.height = slices.info.rows;
  const context = canvas.getContext("2d");
  for (const picture of pictures) context.drawImage(picture, 0, 0);
  Object.assign(canvas.dataset, { slice: String(k), image: "served", layers: shown.join(" "), busy: "false" });
  const lesions = facts.lesion_area_mm2 ? Object.keys(facts.lesion_area_mm2).filter((label) => facts.lesion_area_mm2[label] > 0) : [];
  canvas.setAttribute("aria-label", `CT slice ${k + 1} of ${slices.n}, lung window` +
    (shown.includes("lungs") ? ", lung contour shown" : "") +
    (shown.includes("lesions") ? `, lesion regions shown${lesions.length ? `: ${lesions.join(", ").replaceAll("_", " ")}` : ""}` : ""));
  for (const next of [k + 1, k - 1]) {
    if (next >= 0 && next < slices.n) sliceLayer(next, "image").catch(() => {}); // the neighbours, ahead
  }
}

function mm2(value) { return value === null || value === undefined ? "—" : `${value.toFixed(0)} mm²`; }

function describeSlice(k) {
  const result = slices.result;
  const facts = slices.info.slices[k];
  const items = [];
  const position = facts.position_mm === null ? "" : `; ${facts.position_mm.toFixed(1)} mm along the slice normal`;
  items.push(["slice", `${k + 1} of ${slices.n} (index ${k} in the result${position})`]);
  if (slices.info.layers.includes("lungs")) {
    items.push(["lung area on this slice", facts.lung_area_mm2 === null ? "not measured (no pixel spacing)" : mm2(facts.lung_area_mm2)]);
  }
  const lesions = result.lesions;
  if (lesions && lesions.ran) {
    const score = facts.lesion_score;
    items.push(["lesion score on this slice", score === null ? "—" : score > 0 ? score.toFixed(2) : "0 (no lesion region inside the lungs)"]);
    const areas = facts.lesion_area_mm2;
    items.push(["lesion area on this slice", areas === null ? "not measured (no pixel spacing)"
      : Object.entries(areas).map(([label, area]) => `${label.replaceAll("_", " ")} ${mm2(area)}`)]);
    const here = lesions.lesions.filter((l) => l.slices && k >= l.slices[0] && k <= l.slices[1]);
    if (here.length) {
      items.push(["lesions spanning this slice", here.map((l) => `${l.label.replaceAll("_", " ")}: slices ${l.slices[0]}–${l.slices[1]}` +
        (l.volume_ml === null || l.volume_ml === undefined ? "" : `, ${l.volume_ml.toFixed(2)} mL`) + `, largest at ${l.slice_index}`)]);
    }
  } else if (lesions) items.push(["lesion segmentation", lesions.gate]);
  const classification = result.classification;
  if (classification && classification.slice_indices) {
    const j = classification.slice_indices.indexOf(k);
    items.push(["classifier on this slice", j < 0 ? "not classified (lungs under 1% of the slice)" :
      classification.slice_probabilities[j].map((p, c) => `${Object.keys(classification.probabilities)[c]} ${p.toFixed(2)}`).join(" · ")]);
  }
  $("slice-info").replaceChildren(...items.flatMap(([name, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (Array.isArray(value)) {
      const list = document.createElement("ul");
      list.replaceChildren(...value.map((v) => { const li = document.createElement("li"); li.textContent = v; return li; }));
      dd.appendChild(list);
    } else dd.textContent = value;
    return [dt, dd];
  }));
}

/** Keys of the slider and of the image: arrows one slice, Page Up/Down ten, Home/End the ends. */
function sliceKey(event) {
  const step = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[event.key];
  if (step !== undefined) setSlice(slices.index + step);
  else if (event.key === "Home") setSlice(0);
  else if (event.key === "End") setSlice(slices.n - 1);
  else return;
  event.preventDefault();
}

async function refreshHistory() {
  let items;
  try { items = await getJson(`${API}/screenings?limit=50`); } catch (error) { setStatus(`Worklist: ${error.message}`); return; }
  const body = $("history").querySelector("tbody");
  body.replaceChildren(...items.map((item) => {
    const row = document.createElement("tr");
    cell(row, item.created_at.replace("T", " ").slice(0, 19));
    cell(row, localNames[item.id] || item.id.slice(0, 8));
    cell(row, item.image_type.replace("_", " "));
    cell(row, item.status, item.status === "rejected" ? "rejected" : "");
    cell(row, item.top_label || "—");
    cell(row, item.positive.join(", ") || "—", item.positive.length ? "positive" : "");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open result ${localNames[item.id] || item.id.slice(0, 8)}`);
    open.addEventListener("click", async () => show(await getJson(item.url)));
    row.appendChild(document.createElement("td")).appendChild(open);
    return row;
  }));
}

async function exportCsv() {
  const link = document.createElement("a");
  link.href = await blobUrl(`${API}/screenings.csv`);
  link.download = "chestlens-worklist.csv";
  link.click();
}

function visible(files) { return [...files].filter((f) => !f.name.startsWith(".")); }

async function entries(item) {
  // A dropped folder: all its files, recursively (for CT series).
  if (item.isFile) return [await new Promise((ok, fail) => item.file(ok, fail))];
  const reader = item.createReader();
  const found = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) break;
    for (const child of batch) found.push(...(await entries(child)));
  }
  return found;
}

function guard(promise) { promise.catch((error) => setStatus(`Error: ${error.message}`)); }

window.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) guard(upload([file], file.name));
    e.target.value = "";
  });
  $("folder-input").addEventListener("change", (e) => {
    const files = visible(e.target.files);
    const folder = files.length ? files[0].webkitRelativePath.split("/")[0] : "folder";
    if (files.length) guard(upload(files, folder));
    e.target.value = "";
  });
  drop.addEventListener("click", () => $("file-input").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    guard((async () => {
      if (items.length === 1 && items[0].isFile) { const f = e.dataTransfer.files[0]; return upload([f], f.name); }
      const files = visible((await Promise.all(items.map(entries))).flat());
      return upload(files, items.length === 1 ? items[0].name : `${files.length} files`);
    })());
  });
  for (const name of LAYERS) {
    $(`toggle-${name}`).addEventListener("change", (e) => { $(`layer-${name}`).hidden = !e.target.checked; });
  }
  const slider = $("slice-slider");
  slider.addEventListener("input", () => setSlice(Number(slider.value)));
  slider.addEventListener("keydown", sliceKey);
  $("slice-view").addEventListener("keydown", sliceKey);
  $("slice-view").addEventListener("wheel", (e) => {
    if (!slices.n || e.deltaY === 0) return;
    e.preventDefault();
    setSlice(slices.index + Math.sign(e.deltaY));
  }, { passive: false });
  for (const name of OVERLAYS) $(`slice-${name}`).addEventListener("change", () => slices.n && guard(drawSlice()));
  $("refresh").addEventListener("click", () => guard(refreshHistory()));
  $("export").addEventListener("click", () => guard(exportCsv()));
  guard(refreshHistory());
});
