// chestlens offline screener: decode -> grey [0, 1] -> ONNX graphs (which resize and normalise exactly
// like Python) -> probabilities, decisions, CAM heatmap, lung mask and the heatmap share in the lungs.
import * as ort from "./vendor/ort.wasm.min.mjs";
import { isDicom, LUMA, readDicom } from "./dicom.js";
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

// ---------------------------------------------------------------- decoding to grey [0, 1]
async function decode(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isDicom(bytes)) return readDicom(bytes);
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
  for (let i = 0; i < values.length; i++) {
    const alpha = rgba[4 * i + 3] / 255; // transparent = black, as chestlens.io.raster
    let grey = 0;
    for (let c = 0; c < 3; c++) grey += LUMA[c] * (rgba[4 * i + c] / 255) * alpha;
    values[i] = Math.min(1, Math.max(0, grey));
  }
  return { rows: bitmap.height, cols: bitmap.width, unit: "unit", values };
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

/** Lung mask (Uint8Array, size x size on the segmenter grid) of a radiograph, or null. */
async function segmentLungs(image) {
  if (!state.lungs || image.unit === "HU") return null;
  const seg = await run(state.lungs, imageFeed(toUnit(image, state.lungs.sidecar.preprocess), image.rows, image.cols));
  const size = state.lungs.sidecar.preprocess.input_size;
  const p = seg.outputs.probabilities.data;
  const mask = new Uint8Array(size * size);
  for (let i = 0; i < mask.length; i++) mask[i] = p[i] >= 0.5 ? 1 : 0;
  return { mask, size, ms: seg.ms };
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
  const unit = toUnit(image, spec.preprocess);
  const lungs = await segmentLungs(image);
  if (spec.preprocess.lung_roi !== "none" && !lungs) throw new Error("this classifier reads the lung fields: no lung segmenter loaded");
  const inputs = classifierInputs(image, unit, lungs, spec);
  const cls = await run(classifier, inputs.feeds);
  const probabilities = Array.from(cls.outputs.probabilities.data);
  const top = probabilities.indexOf(Math.max(...probabilities));
  const size = spec.preprocess.input_size;
  const cam = cls.outputs.cam.data.slice(top * size * size, (top + 1) * size * size);
  const result = {
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
    timings_ms: { classify: cls.ms },
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
  const unit = toUnit(image, state.classifier.sidecar.preprocess);
  const heat = $("show-heatmap").checked;
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

function show(shown, image) {
  const { result } = shown;
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
  $("result-disclaimer").textContent = result.disclaimer;
  $("result-json").textContent = JSON.stringify(result, null, 2);
  $("result").hidden = false;
  state.shown = shown;
  draw(image, shown);
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
    setStatus(`Done (${shown.result.timings_ms.classify.toFixed(0)} ms classifier).`, "done");
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
  $(id).addEventListener("change", () => state.shown && draw(state.last.image, state.shown));
}
start();
