// chestlens page: upload, show a result with toggleable layers, poll series jobs, list the worklist.
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
  $("layer-summary").hidden = twoD;
  if (!twoD) $("layer-summary").src = await blobUrl(overlays.summary);
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
    cell(row, lesion.slices ? `${lesion.slices[0]}–${lesion.slices[1]} (largest ${lesion.slice_index})` : "—", "num");
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
  $("refresh").addEventListener("click", () => guard(refreshHistory()));
  $("export").addEventListener("click", () => guard(exportCsv()));
  guard(refreshHistory());
});
