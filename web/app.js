// chestlens offline screener: decode -> grey [0, 1] -> quality gate (gate.js, the Python gate's rules
// with gate.json's numbers) -> ONNX graphs (which resize and normalise exactly like Python) ->
// probabilities, decisions, CAM heatmap, lung mask and the heatmap share in the lungs. A rejected image
// gets the gate's reason and no probabilities.
import * as ort from "./vendor/ort.wasm.min.mjs";
import { colouredFraction, isDicom, LUMA, readDicom } from "./dicom.js";
import { checkCtPicture, checkLungFields, checkMetadata, checkPixels, checkView, gateVerdict, workingImage } from "./gate.js";
import { crop, dilate, lungBox, resizeNearest } from "./lungroi.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { ready: false, offlineReady: false, result: null, last: null };
window.chestlens = state;

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").dataset.state = kind;
}

function threadCount() {
  const asked = Number(params.get("threads"));
  if (asked > 0) return asked;
  return self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function loadModel(entry) {
  const sidecar = await fetchJson(entry.sidecar);
  const session = await ort.InferenceSession.create(entry.onnx, { executionProviders: ["wasm"] });
  return { sidecar, session };
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  const hadController = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (hadController) location.reload(); // a new build took over: use its models
  });
  await navigator.serviceWorker.register("./sw.js");
  await navigator.serviceWorker.ready;
  state.offlineReady = true;
  document.body.dataset.offline = "installed";
}

async function start() {
  try {
    ort.env.wasm.wasmPaths = new URL("./vendor/", location.href).href;
    ort.env.wasm.numThreads = threadCount();
    const index = await fetchJson("models.json");
    state.index = index;
    $("build").textContent = `build ${index.build} · chestlens ${index.chestlens_version}`;
    state.rules = await fetchJson(index.gate);
    showGateNote(state.rules);
    state.classifier = await loadModel(index.models.classifier);
    if (index.models.lungs) state.lungs = await loadModel(index.models.lungs);
    $("disclaimer").textContent = state.classifier.sidecar.disclaimer;
    $("runtime").textContent = `onnxruntime-web wasm, ${ort.env.wasm.numThreads} thread(s), ` +
      `cross-origin isolated: ${self.crossOriginIsolated}`;
    state.threads = ort.env.wasm.numThreads;
    state.readyMs = performance.now();
    state.ready = true;
    $("file").disabled = false;
    setStatus("Ready: choose an image.", "ready");
  } catch (error) {
    setStatus(`Cannot load the models: ${error.message}`, "error");
  }
  registerWorker().catch((error) => console.warn("service worker:", error));
}

/** The page's note on its quality gate: which Python rules run here and which do not (gate.json). */
function showGateNote(rules) {
  $("gate-missing").replaceChildren(...rules.not_in_browser.map(({ check, why }) => {
    const item = document.createElement("li");
    item.textContent = `${check}: ${why}`;
    return item;
  }));
  $("view-model").textContent = rules.view.model.description;
}

// ---------------------------------------------------------------- decoding to grey [0, 1]
async function decode(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const tolerance = state.rules.colour.CHANNEL_TOLERANCE;
  if (isDicom(bytes)) return readDicom(bytes, tolerance);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Error("not a PNG, JPEG or DICOM image the browser can read");
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { colorSpace: "srgb" });
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const values = new Float64Array(bitmap.width * bitmap.height);
  const channel = (i, c) => (rgba[4 * i + c] / 255) * (rgba[4 * i + 3] / 255); // transparent = black, as chestlens.io.raster
  for (let i = 0; i < values.length; i++) {
    let grey = 0;
    for (let c = 0; c < 3; c++) grey += LUMA[c] * channel(i, c);
    values[i] = Math.min(1, Math.max(0, grey));
  }
  const meta = { format: "picture", frames: 1, colouredFraction: colouredFraction(channel, values.length, tolerance) };
  return { rows: bitmap.height, cols: bitmap.width, unit: "unit", values, meta };
}

/** Grey [0, 1] float32 for the graphs; CT (HU) is windowed with the model's ct_window. */
function toUnit(image, preprocess) {
  const out = new Float32Array(image.values.length);
  if (image.unit !== "HU") { out.set(image.values); return out; }
  if (!preprocess.ct_window) throw new Error("CT input but the model defines no CT window");
  const [centre, width] = preprocess.ct_window;
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, (image.values[i] - (centre - width / 2)) / width));
  return out;
}

// ---------------------------------------------------------------- screening
async function run(model, feeds) {
  const tensors = {};
  for (const [name, { values, dims }] of Object.entries(feeds)) tensors[name] = new ort.Tensor("float32", values, dims);
  const start = performance.now();
  const outputs = await model.session.run(tensors);
  return { outputs, ms: performance.now() - start };
}

const imageFeed = (values, rows, cols) => ({ image: { values, dims: [1, 1, rows, cols] } });

/** Lung probabilities and mask (size x size on the segmenter grid) of the working image of a radiograph
 *  (as the Python screener: the segmenter reads the working image), or null without a segmenter. */
async function segmentLungs(work) {
  if (!state.lungs) return null;
  const seg = await run(state.lungs, imageFeed(work.values, work.rows, work.cols));
  const size = state.lungs.sidecar.preprocess.input_size;
  const probability = seg.outputs.probabilities.data;
  const mask = new Uint8Array(size * size);
  for (let i = 0; i < mask.length; i++) mask[i] = probability[i] >= 0.5 ? 1 : 0;
  return { probability, mask, size, ms: seg.ms };
}

/** The quality gate (chestlens.pipeline.gate's order): DICOM tags and pixel checks before any model,
 *  then the lung-field and view checks on the lung segmenter's output. Returns {verdict, work, lungs}. */
async function runGate(image) {
  const rules = state.rules;
  const checks = [...checkMetadata(image.meta, rules), ...checkPixels(image, rules)];
  if (checks.every((c) => c.passed) && image.unit === "HU") {
    checks.push({ name: "ct_not_in_browser", passed: false, detail: rules.ct_rejection });
  }
  if (!checks.every((c) => c.passed)) return { verdict: gateVerdict(checks, "chest_radiograph"), work: null, lungs: null, notes: [] };
  const start = performance.now();
  const work = workingImage(image.values, image.rows, image.cols, rules.working_side);
  const lungs = await segmentLungs(work);
  const notes = [];
  if (lungs) {
    checks.push(checkLungFields(lungs.probability, lungs.size, rules).check);
    const view = checkView(work.values, work.rows, work.cols, lungs.probability, lungs.size, rules);
    checks.push(view.check, checkCtPicture(view.features, rules).check);
  } else notes.push("no lung segmenter loaded: lung-field check and lung measurements skipped");
  return { verdict: gateVerdict(checks, "chest_radiograph"), work, lungs, notes, ms: performance.now() - start };
}

/** The classifier's frame and feeds: the whole image, or (lung-field classifiers, chestlens.data.lung_roi)
 *  the image cropped to the lungs' box, with the dilated lungs on the network grid for lung_roi "mask". */
function classifierInputs(image, unit, lungs, spec) {
  const pre = spec.preprocess;
  const size = pre.input_size;
  const box = pre.lung_roi !== "none" && lungs ? lungBox(lungs.mask, lungs.size, lungs.size, pre.lung_margin) : null;
  const frame = box ? crop(unit, image.rows, image.cols, box) : { values: unit, rows: image.rows, cols: image.cols };
  const frameLungs = !lungs ? null : box ? crop(lungs.mask, lungs.size, lungs.size, box) : { values: lungs.mask, rows: lungs.size, cols: lungs.size };
  const grid = frameLungs ? resizeNearest(frameLungs.values, frameLungs.rows, frameLungs.cols, size, size) : null;
  const feeds = imageFeed(frame.values, frame.rows, frame.cols);
  if (pre.lung_roi === "mask") {
    const inside = grid && box ? dilate(grid, size, spec.lung_roi.mask_radius) : new Uint8Array(size * size).fill(1);
    feeds.lungs = { values: Float32Array.from(inside), dims: [1, 1, size, size] };
  }
  return { box, grid, feeds };
}

async function screen(image) {
  const classifier = state.classifier;
  const spec = classifier.sidecar;
  const gate = await runGate(image);
  const lungs = gate.lungs;
  if (!gate.verdict.accepted) {
    const result = {
      gate: gate.verdict,
      input: { rows: image.rows, cols: image.cols, unit: image.unit },
      disclaimer: spec.disclaimer,
    };
    if (lungs) result.lungs = { model: state.lungs.sidecar.name, area_fraction: lungs.mask.reduce((a, b) => a + b, 0) / lungs.mask.length };
    return { result, cam: null, size: 0, box: null, lungMask: lungs && lungs.mask, lungSize: lungs ? lungs.size : 0 };
  }
  const unit = toUnit(image, spec.preprocess);
  if (spec.preprocess.lung_roi !== "none" && !lungs) throw new Error("this classifier reads the lung fields: no lung segmenter loaded");
  const inputs = classifierInputs(image, unit, lungs, spec);
  const cls = await run(classifier, inputs.feeds);
  const probabilities = Array.from(cls.outputs.probabilities.data);
  const top = probabilities.indexOf(Math.max(...probabilities));
  const size = spec.preprocess.input_size;
  const cam = cls.outputs.cam.data.slice(top * size * size, (top + 1) * size * size);
  const result = {
    gate: gate.verdict,
    model: { name: spec.name, version: spec.version, sha256: spec.sha256 },
    input: { rows: image.rows, cols: image.cols, unit: image.unit },
    probabilities: Object.fromEntries(spec.labels.map((label, k) => [label, probabilities[k]])),
    top_label: spec.labels[top],
    temperature: spec.temperature,
    decisions: spec.operating_points.map((op) => ({
      label: op.label, threshold: op.threshold, criterion: op.criterion,
      positive: probabilities[spec.labels.indexOf(op.label)] >= op.threshold,
    })),
    explanation: { method: "cam", target_label: spec.labels[top], energy_in_lungs: null },
    timings_ms: { gate: gate.ms, classify: cls.ms },
    notes: gate.notes,
    threads: state.threads,
    disclaimer: spec.disclaimer,
  };
  if (lungs) {
    let inside = 0;
    let total = 0;
    for (let i = 0; i < cam.length; i++) { total += cam[i]; if (inputs.grid[i]) inside += cam[i]; }
    result.lungs = { model: state.lungs.sidecar.name, area_fraction: lungs.mask.reduce((a, b) => a + b, 0) / lungs.mask.length };
    result.explanation.energy_in_lungs = total > 0 ? inside / total : null;
    result.timings_ms.lungs = lungs.ms;
  }
  state.last = { feeds: inputs.feeds, image };
  return { result, cam, size, box: inputs.box, lungMask: lungs && lungs.mask, lungSize: lungs ? lungs.size : 0 };
}

// ---------------------------------------------------------------- display
/** Grey [0, 1] for display: the classifier's input, or a min-max CT slice (rejected, no CT window). */
function displayUnit(image) {
  const preprocess = state.classifier.sidecar.preprocess;
  if (image.unit !== "HU" || preprocess.ct_window) return toUnit(image, preprocess);
  let low = Infinity, high = -Infinity;
  for (const v of image.values) { if (v < low) low = v; if (v > high) high = v; }
  return Float32Array.from(image.values, (v) => (high > low ? (v - low) / (high - low) : 0));
}

function jet(v) {
  const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3)));
  const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2)));
  const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1)));
  return [255 * r, 255 * g, 255 * b];
}

function draw(image, shown) {
  const scale = Math.min(1, 640 / Math.max(image.rows, image.cols));
  const w = Math.round(image.cols * scale);
  const h = Math.round(image.rows * scale);
  const canvas = $("view");
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(w, h);
  const unit = displayUnit(image);
  const heat = $("show-heatmap").checked && shown.cam;
  const lungs = $("show-lungs").checked && shown.lungMask;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const grey = 255 * unit[Math.floor(y / scale) * image.cols + Math.floor(x / scale)];
      let rgb = [grey, grey, grey];
      if (heat) {
        const [t, b, l, r] = shown.box || [0, 1, 0, 1]; // the classifier's frame, as fractions
        const fy = (y + 0.5) / h, fx = (x + 0.5) / w;
        const inFrame = fy >= t && fy < b && fx >= l && fx < r;
        const cy = Math.min(shown.size - 1, Math.floor(((fy - t) / (b - t)) * shown.size));
        const cx = Math.min(shown.size - 1, Math.floor(((fx - l) / (r - l)) * shown.size));
        const v = inFrame ? shown.cam[cy * shown.size + cx] : 0;
        const colour = jet(v);
        const a = 0.45 * v;
        rgb = rgb.map((c, k) => (1 - a) * c + a * colour[k]);
      }
      if (lungs) {
        const m = shown.lungMask[Math.floor((y * shown.lungSize) / h) * shown.lungSize + Math.floor((x * shown.lungSize) / w)];
        if (m) rgb = [rgb[0] * 0.8, rgb[1] * 0.8 + 51, rgb[2] * 0.8];
      }
      const o = 4 * (y * w + x);
      pixels.data.set([rgb[0], rgb[1], rgb[2], 255], o);
    }
  }
  context.putImageData(pixels, 0, 0);
}

function showGate(gate) {
  $("gate").textContent = `${gate.accepted ? "Accepted" : "REJECTED by the quality gate"}: ${gate.reason}`;
  $("gate").className = gate.accepted ? "" : "rejected";
  $("gate-checks").replaceChildren(...gate.checks.map((c) => {
    const item = document.createElement("li");
    item.textContent = `${c.passed ? "✓" : "✗"} ${c.name}: ${c.detail}`;
    return item;
  }));
}

function show(shown, image) {
  const { result } = shown;
  showGate(result.gate);
  const accepted = result.gate.accepted;
  $("classification").hidden = !accepted;
  $("heatmap-toggle").hidden = !accepted;
  $("lungs-toggle").hidden = !shown.lungMask;
  $("result-disclaimer").textContent = result.disclaimer;
  $("result-json").textContent = JSON.stringify(result, null, 2);
  $("result").hidden = false;
  state.shown = shown;
  state.shownImage = image;
  draw(image, shown);
  if (!accepted) return;
  const body = $("probabilities").querySelector("tbody");
  body.replaceChildren(...Object.entries(result.probabilities).map(([label, p]) => {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${label}</td><td>${p.toFixed(4)}</td>`;
    return row;
  }));
  $("decisions").replaceChildren(...result.decisions.map((d) => {
    const item = document.createElement("li");
    item.textContent = `${d.label}: ${d.positive ? "POSITIVE" : "negative"} at the operating point ` +
      `(threshold ${d.threshold.toFixed(3)}, ${d.criterion})`;
    if (d.positive) item.className = "positive";
    return item;
  }));
  const share = result.explanation.energy_in_lungs;
  $("lungshare").textContent = share === null ? "" :
    `Heatmap share inside the lungs: ${(100 * share).toFixed(1)}% (low values: the model may be reading something other than the lungs)`;
}

async function onFile() {
  const file = $("file").files[0];
  if (!file) return;
  setStatus(`Screening ${file.name}…`, "busy");
  try {
    const image = await decode(file);
    const shown = await screen(image);
    state.result = shown.result;
    show(shown, image);
    if (shown.result.gate.accepted) setStatus(`Done (${shown.result.timings_ms.classify.toFixed(0)} ms classifier).`, "done");
    else setStatus(`Not screened: rejected by the quality gate: ${shown.result.gate.reason}`, "rejected");
  } catch (error) {
    state.result = { error: error.message };
    setStatus(error.message, "error");
  }
}

/** Median milliseconds of the classifier over `repeats` runs on the last image (for bench/). */
state.benchmark = async (repeats = 10) => {
  const { feeds } = state.last;
  const times = [];
  for (let i = 0; i < repeats; i++) times.push((await run(state.classifier, feeds)).ms);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
};

$("file").addEventListener("change", onFile);
for (const id of ["show-heatmap", "show-lungs"]) {
  $(id).addEventListener("change", () => state.shown && draw(state.shownImage, state.shown));
}
start();
