// chestlens page: upload, show a result with toggleable layers, poll series jobs, list the worklist, and
// browse the slices of a CT series result (slice browser, below).
// Client file names stay in this browser tab (sessionStorage); the server never stores them.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const LAYERS = ["heatmap", "lungs", "lesions"];
const localNames = JSON.parse(sessionStorage.getItem("chestlens-names") || "{}");
const objectUrls = [];
/** The files of the series uploaded from this tab, by screening id (the slice browser reads them). */
const seriesFiles = new Map();
const KEEP_SERIES = 3;

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

function keepSeries(screeningId, files) {
  seriesFiles.set(screeningId, files);
  while (seriesFiles.size > KEEP_SERIES) seriesFiles.delete(seriesFiles.keys().next().value);
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
    return pollJob(job.id, label, files);
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

async function pollJob(jobId, label, files) {
  const bar = $("progress");
  bar.hidden = false;
  for (;;) {
    const job = await getJson(`${API}/jobs/${jobId}`);
    bar.value = job.progress;
    setStatus(`${label}: ${job.stage} (${Math.round(job.progress * 100)}%)`);
    if (job.status === "done") {
      remember(job.screening_id, label);
      keepSeries(job.screening_id, files);
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
// The API gives a series result its JSON and two pictures (an 8-slice overview strip and the lesion burden
// plot), no per-slice images or masks. The browser therefore reads the slices from the files uploaded from
// this tab (slices.js), sorted as the server sorts them, and draws on them what the result knows per slice:
// each lesion's 3-D region as its box on the slices it spans (solid on its largest cross-section), the
// slice's lesion score, the lesion areas known for the slice and the classifier's slice probabilities.
// Per-slice lung masks are not in the API: the lung contour toggle says so.
const LESION_COLOURS = { ground_glass_opacity: "rgb(255,200,0)", ggo: "rgb(255,200,0)", consolidation: "rgb(230,30,30)", pneumothorax: "rgb(230,30,30)" };
const FALLBACK_COLOURS = ["rgb(0,160,255)", "rgb(200,0,200)", "rgb(255,120,0)"];
const slices = { n: 0, index: 0, result: null, series: null, cache: new Map(), token: 0 };
window.chestlensSliceBrowser = slices; // for tests and the console

function lesionColour(label, k) { return LESION_COLOURS[label] || FALLBACK_COLOURS[k % FALLBACK_COLOURS.length]; }

async function showSlices(screening) {
  const result = screening.result;
  const n = result.input.n_slices || 1;
  const token = ++slices.token;
  Object.assign(slices, { n: n > 1 ? n : 0, index: 0, result, series: null, cache: new Map(), error: null });
  $("slice-browser").hidden = n <= 1;
  if (n <= 1) return;
  const slider = $("slice-slider");
  slider.max = String(n - 1);
  const lungs = $("slice-lungs");
  lungs.checked = false;
  lungs.disabled = true;
  lungs.parentElement.title = "This server's API serves no per-slice lung masks (only their volume).";
  lungs.parentElement.lastChild.textContent = " lung contour (not served per slice by this server)";
  const files = seriesFiles.get(screening.id);
  let source;
  if (!files) {
    source = "Slice images are read from the files uploaded from this browser tab (this server's API serves " +
      "none per slice); this series was not uploaded from this tab, so the slices show the lesion regions only.";
  } else {
    try {
      const series = await window.chestlensSlices.readSeries(files);
      if (token !== slices.token) return;
      if (series.slices.length !== n) {
        source = `The uploaded files hold ${series.slices.length} slices, the result ${n}: slice images not shown.`;
      } else {
        slices.series = series;
        source = `Slice images read in this browser from the ${n} uploaded files (sorted by ${series.sortedBy.replace("_", " ")}, ` +
          "as on the server), lung window (centre −600 HU, width 1500 HU). Lesion regions are the result's 3-D lesions: " +
          "their box on every slice they span, solid on their largest cross-section.";
      }
    } catch (error) {
      source = `Slice images not shown: ${error.message}.`;
    }
  }
  $("slice-source").textContent = source;
  $("summary-box").open = !slices.series;
  setSlice(Math.floor((n - 1) / 2));
}

/** Grey slice k (lung window) as ImageData, decoded on demand (a few dozen kept). */
function sliceImage(k) {
  if (!slices.series) return null;
  if (slices.cache.has(k)) return slices.cache.get(k);
  const { rows, cols, hu } = window.chestlensSlices.sliceHu(slices.series.slices[k]);
  const grey = window.chestlensSlices.windowed(hu);
  const image = new ImageData(cols, rows);
  for (let i = 0; i < grey.length; i++) image.data.set([grey[i], grey[i], grey[i], 255], 4 * i);
  slices.cache.set(k, image);
  if (slices.cache.size > 32) slices.cache.delete(slices.cache.keys().next().value);
  return image;
}

function setSlice(k) {
  if (!slices.n) return;
  k = Math.max(0, Math.min(slices.n - 1, Math.round(k)));
  slices.index = k;
  const slider = $("slice-slider");
  slider.value = String(k);
  const text = `slice ${k + 1} of ${slices.n}`;
  slider.setAttribute("aria-valuetext", text);
  $("slice-label").textContent = `${k + 1} of ${slices.n}`;
  drawSlice();
  describeSlice(k);
}

function drawSlice() {
  const k = slices.index;
  const result = slices.result;
  const canvas = $("slice-canvas");
  let image = null;
  try { image = sliceImage(k); } catch (error) { slices.error = error.message; $("slice-source").textContent = `Slice ${k + 1}: ${error.message}.`; }
  const rows = image ? image.height : result.input.rows;
  const cols = image ? image.width : result.input.cols;
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, cols, rows);
  if (image) context.putImageData(image, 0, 0);
  const shown = [];
  if ($("slice-lesions").checked && result.lesions) {
    const labels = [...new Set(result.lesions.lesions.map((l) => l.label))];
    const width = Math.max(1, Math.round(cols / 256));
    context.font = `${Math.max(10, Math.round(cols / 40))}px system-ui, sans-serif`;
    for (const lesion of result.lesions.lesions) {
      if (!lesion.slices || k < lesion.slices[0] || k > lesion.slices[1]) continue;
      const [x0, y0, x1, y1] = lesion.box;
      context.strokeStyle = context.fillStyle = lesionColour(lesion.label, labels.indexOf(lesion.label));
      context.lineWidth = lesion.slice_index === k ? 2 * width : width;
      context.setLineDash(lesion.slice_index === k ? [] : [4 * width, 3 * width]);
      context.strokeRect(x0, y0, x1 - x0, y1 - y0);
      context.fillText(lesion.label.replaceAll("_", " "), x0, Math.max(10, y0 - 3));
      shown.push(lesion.label);
    }
    context.setLineDash([]);
  }
  canvas.dataset.slice = String(k);
  canvas.dataset.image = image ? "decoded" : "none";
  canvas.dataset.lesions = String(shown.length);
  canvas.setAttribute("aria-label", `CT slice ${k + 1} of ${slices.n}` + (image ? ", lung window" : " (image not available)") +
    (shown.length ? `, ${shown.length} lesion region(s) outlined: ${[...new Set(shown)].join(", ").replaceAll("_", " ")}` : ""));
}

function describeSlice(k) {
  const result = slices.result;
  const items = [];
  const series = slices.series && slices.series.slices[k];
  const position = series && series.position !== null ? `; ${series.position.toFixed(1)} mm along the slice normal` : "";
  items.push(["slice", `${k + 1} of ${slices.n} (index ${k} in the result${position})`]);
  const lesions = result.lesions;
  if (lesions && lesions.ran) {
    const score = lesions.slice_scores ? lesions.slice_scores[k] : null;
    items.push(["lesion score on this slice", score === null || score === undefined ? "—" :
      score > 0 ? score.toFixed(2) : "0 (no lesion region inside the lungs)"]);
    const here = lesions.lesions.filter((l) => l.slices && k >= l.slices[0] && k <= l.slices[1]);
    const largest = here.filter((l) => l.slice_index === k);
    items.push(["lesion area on this slice", largest.length
      ? largest.map((l) => `${l.label.replaceAll("_", " ")} ${l.area_mm2 === null ? `${l.area_pixels} px` : `${l.area_mm2.toFixed(0)} mm²`} (its largest cross-section)`)
      : here.length ? "not given for this slice (the result gives each lesion's area at its largest cross-section only)" : "no lesion on this slice"]);
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
  for (const id of ["slice-lungs", "slice-lesions"]) $(id).addEventListener("change", () => slices.n && drawSlice());
  $("refresh").addEventListener("click", () => guard(refreshHistory()));
  $("export").addEventListener("click", () => guard(exportCsv()));
  guard(refreshHistory());
});
