// The quality gate in the browser: the rules of chestlens.pipeline.gate and chestlens.pipeline.view, on
// the same inputs, with their numbers read from gate.json (written by `chestlens export web` from the
// Python modules and view_model.json, so a change there changes the page). Each check returns
// { name, passed, detail } with the Python gate's words; gateVerdict combines them as
// chestlens.pipeline.gate.gate_verdict does. The resizes are OpenCV's (cv2.resize INTER_AREA and
// INTER_LINEAR) and Sobel, written out, because the Python rules run on their outputs.

// ---------------------------------------------------------------- Python's number formatting
/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
const fixed = (x, digits) => x.toFixed(digits); // f"{x:.Nf}"
const percent = (x, digits) => `${(100 * x).toFixed(digits)}%`; // f"{x:.N%}"
const general = (x) => String(Number(x.toPrecision(6))); // f"{x:g}"
const plain = (x) => String(x); // f"{x}" of a float constant (shortest repr in both languages)
/** repr() of a str, as Python writes it (single quotes unless the text holds one and no double). */
export function pyRepr(text) {
  if (text.includes("'") && !text.includes('"')) return `"${text}"`;
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

const passed = (name, detail) => ({ name, passed: true, detail });
const failed = (name, detail) => ({ name, passed: false, detail });

// ---------------------------------------------------------------- metadata (DICOM tags)
const words = (text) => text.toUpperCase().match(/[A-Z]+/g) || [];

/** check_metadata: one check per DICOM tag present (pictures have none). `meta`: {modality, bodyPart, view}. */
export function checkMetadata(meta, rules) {
  const g = rules.gate;
  const checks = [];
  if (meta.modality) {
    const code = meta.modality.trim().toUpperCase();
    if (code in g.ACCEPTED_MODALITIES) checks.push(passed("dicom_modality", `Modality ${code} (${g.ACCEPTED_MODALITIES[code]})`));
    else if (code in g.NEUTRAL_MODALITIES) checks.push(passed("dicom_modality", `Modality ${code} (${g.NEUTRAL_MODALITIES[code]}): judged from pixels`));
    else {
      const name = g.MODALITY_NAMES[code] || "not a radiograph or CT";
      checks.push(failed("dicom_modality", `DICOM Modality ${code} (${name}): only chest radiographs and CT are screened`));
    }
  }
  if (meta.bodyPart) {
    const found = words(meta.bodyPart);
    const shown = pyRepr(meta.bodyPart);
    if (found.some((w) => g.CHEST_WORDS.some((p) => w.startsWith(p)))) checks.push(passed("dicom_body_part", `BodyPartExamined ${shown} is the chest`));
    else if (found.some((w) => g.OTHER_PART_WORDS.some((p) => w.startsWith(p)))) checks.push(failed("dicom_body_part", `DICOM BodyPartExamined ${shown} is not the chest`));
    else checks.push(passed("dicom_body_part", `BodyPartExamined ${shown} names no other body part`));
  }
  if (meta.view) {
    const shown = pyRepr(meta.view);
    if (words(meta.view).some((w) => g.NON_FRONTAL_VIEWS.includes(w))) {
      checks.push(failed("dicom_view", `DICOM ViewPosition ${shown} is a lateral or oblique view; only frontal views are screened`));
    } else checks.push(passed("dicom_view", `ViewPosition ${shown}`));
  }
  return checks;
}

// ---------------------------------------------------------------- pixels (no model)
/** Every k-th row and column so that at most about a million values remain (gate._subsampled). */
function subsampled(values, rows, cols) {
  const step = Math.max(1, Math.ceil(Math.sqrt((rows * cols) / 1e6)));
  const out = [];
  for (let y = 0; y < rows; y += step) for (let x = 0; x < cols; x += step) out.push(values[y * cols + x]);
  return Float64Array.from(out);
}

/** numpy.percentile (linear interpolation) of sorted values. */
function percentileSorted(sorted, q) {
  const position = ((sorted.length - 1) * q) / 100;
  const low = Math.floor(position);
  const high = Math.min(sorted.length - 1, low + 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

/** check_pixels: colour, frames, size, contrast, then grey_levels ([0, 1] images). `image`: {rows, cols,
 *  unit: "HU" | "unit", values, meta: {format: "dicom" | "picture", colouredFraction, photometric,
 *  frames}}; colouredFraction (null for grey data) is chestlens.io.colour's share of coloured pixels. */
export function checkPixels(image, rules) {
  const g = rules.gate;
  const meta = image.meta;
  const ct = image.unit === "HU";
  const checks = [];
  const colour = meta.colouredFraction !== null && meta.colouredFraction > rules.colour.COLOUR_PIXEL_FRACTION;
  if (!colour) checks.push(passed("colour", "grey image"));
  else if (meta.format === "dicom") {
    checks.push(failed("colour", `colour DICOM (${meta.photometric || "colour"}, e.g. ultrasound or a photograph): radiographs and CT are grey`));
  } else checks.push(passed("colour", "colour picture (e.g. an annotated figure): judged on its grey version"));
  if ((meta.frames || 1) > 1 && !ct) {
    return [...checks, failed("frames", `${meta.frames} frames (a cine loop or series): only single radiographs are screened`)];
  }
  checks.push(passed("frames", "one image"));
  const { rows, cols } = image;
  if (Math.min(rows, cols) < g.MIN_SIDE_PX) {
    checks.push(failed("size", `image is ${rows}x${cols} px; the shorter side must be at least ${g.MIN_SIDE_PX} px`));
  } else checks.push(passed("size", `${rows}x${cols} px`));
  const sample = subsampled(image.values, rows, cols);
  const sorted = Float64Array.from(sample).sort();
  const spread = percentileSorted(sorted, 99) - percentileSorted(sorted, 1);
  const minimum = ct ? g.MIN_SPREAD_HU : g.MIN_SPREAD_UNIT;
  const shown = ct ? `${fixed(spread, 0)} HU` : fixed(spread, 2);
  if (spread < minimum) checks.push(failed("contrast", `near-constant image (1st-99th percentile spread ${shown}, needs ${general(minimum)})`));
  else checks.push(passed("contrast", `1st-99th percentile spread ${shown}`));
  if (!ct) {
    const seen = new Uint8Array(256);
    for (const v of sample) seen[Math.min(255, Math.max(0, roundHalfEven(v * 255)))] = 1;
    const levels = seen.reduce((a, b) => a + b, 0);
    if (levels < g.MIN_GREY_LEVELS) checks.push(failed("grey_levels", `only ${levels} grey levels: a mask or label image, not a radiograph`));
    else checks.push(passed("grey_levels", `${levels} grey levels (8-bit)`));
  }
  return checks;
}

// ---------------------------------------------------------------- OpenCV resizes
/** Source indices and weights of each destination index along one axis. */
function axisWeights(ssize, dsize, mode, areaShrink) {
  const inv = dsize / ssize; // cv2: inv_scale = dsize / ssize, scale = 1 / inv_scale
  const scale = 1 / inv;
  const out = [];
  for (let d = 0; d < dsize; d++) {
    if (areaShrink) { // cv2 computeResizeAreaTab
      const f1 = d * scale;
      const f2 = f1 + scale;
      const cell = Math.min(scale, ssize - f1);
      let s2 = Math.min(Math.floor(f2), ssize - 1);
      const s1 = Math.min(Math.ceil(f1), s2);
      const taps = [];
      if (s1 - f1 > 1e-3) taps.push([s1 - 1, (s1 - f1) / cell]);
      for (let s = s1; s < s2; s++) taps.push([s, 1 / cell]);
      if (f2 - s2 > 1e-3) taps.push([s2, Math.min(Math.min(f2 - s2, 1), cell) / cell]);
      out.push(taps);
      continue;
    }
    let s;
    let f;
    if (mode === "area") { // INTER_AREA when enlarging: linear with cv2's "area" coefficients
      s = Math.floor(d * scale);
      f = d + 1 - (s + 1) * inv;
      f = f <= 0 ? 0 : f - Math.floor(f);
    } else { // INTER_LINEAR
      f = (d + 0.5) * scale - 0.5;
      s = Math.floor(f);
      f -= s;
    }
    if (s < 0) { s = 0; f = 0; }
    if (s >= ssize - 1) { s = ssize - 1; f = 0; }
    out.push(f === 0 ? [[s, 1]] : [[s, 1 - f], [s + 1, f]]);
  }
  return out;
}

/** cv2.resize(src, (W, H), interpolation) of a rows x cols array; mode "area" (INTER_AREA) or "linear". */
export function resize(src, rows, cols, H, W, mode) {
  const out = new Float64Array(H * W);
  if (H === rows && W === cols) { out.set(src); return out; }
  const shrink = mode === "area" && cols / W >= 1 && rows / H >= 1;
  const xs = axisWeights(cols, W, mode, shrink);
  const ys = axisWeights(rows, H, mode, shrink);
  const across = new Float64Array(rows * W); // horizontal pass
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < W; x++) {
      let sum = 0;
      for (const [s, w] of xs[x]) sum += w * src[y * cols + s];
      across[y * W + x] = sum;
    }
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let sum = 0;
      for (const [s, w] of ys[y]) sum += w * across[s * W + x];
      out[y * W + x] = sum;
    }
  }
  return out;
}

/** chestlens.preprocess.resize.working_image: the longer side down to `side` by area averaging. */
export function workingImage(values, rows, cols, side) {
  const scale = side / Math.max(rows, cols);
  if (scale >= 1) return { values: Float32Array.from(values), rows, cols };
  const w = Math.max(1, roundHalfEven(cols * scale));
  const h = Math.max(1, roundHalfEven(rows * scale));
  return { values: Float32Array.from(resize(values, rows, cols, h, w, "area")), rows: h, cols: w };
}

// ---------------------------------------------------------------- lung fields
/** Mask pixels whose 4-neighbourhood (outside counts as empty) leaves the mask: mask & ~binary_erosion. */
function boundary(mask, h, w) {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (y === 0 || x === 0 || y === h - 1 || x === w - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]) out[i] = 1;
    }
  }
  return out;
}

/** 4-connected components (scipy.ndimage.label's default): labels (0 = background) and sizes. */
function label(mask, h, w) {
  const labels = new Int32Array(h * w);
  const sizes = [0];
  const stack = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const id = sizes.length;
    let size = 0;
    labels[start] = id;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop();
      size++;
      const y = Math.floor(i / w), x = i - y * w;
      for (const j of [y > 0 ? i - w : -1, y < h - 1 ? i + w : -1, x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1]) {
        if (j >= 0 && mask[j] && !labels[j]) { labels[j] = id; stack.push(j); }
      }
    }
    sizes.push(size);
  }
  return { labels, sizes };
}

/** Area of the convex hull of points [[r, c], ...] (monotone chain, shoelace). */
function hullArea(points) {
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (list) => {
    const chain = [];
    for (const p of list) {
      while (chain.length >= 2 && cross(chain[chain.length - 2], chain[chain.length - 1], p) <= 0) chain.pop();
      chain.push(p);
    }
    chain.pop();
    return chain;
  };
  const hull = [...half(points), ...half([...points].reverse())];
  let twice = 0;
  for (let k = 0; k < hull.length; k++) {
    const [a, b] = [hull[k], hull[(k + 1) % hull.length]];
    twice += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(twice) / 2;
}

/** gate._main_solidity: pixels of the (up to two) components holding >= the main share of the mask over
 *  the area of their convex hulls (of the pixel squares' corners of each component's edge pixels). */
function mainSolidity(mask, h, w, share) {
  const { labels, sizes } = label(mask, h, w);
  const total = sizes.reduce((a, b) => a + b, 0);
  const order = sizes.map((s, k) => [s, k]).slice(1).sort((a, b) => b[0] - a[0]).slice(0, 2);
  const main = order.filter(([s]) => s >= share * total).map(([, k]) => k);
  let pixels = 0;
  let hulls = 0;
  for (const k of main) {
    const component = new Uint8Array(h * w);
    for (let i = 0; i < labels.length; i++) if (labels[i] === k) component[i] = 1;
    const edge = boundary(component, h, w);
    const corners = [];
    for (let i = 0; i < edge.length; i++) {
      if (!edge[i]) continue;
      const r = Math.floor(i / w), c = i - r * w;
      corners.push([r, c], [r, c + 1], [r + 1, c], [r + 1, c + 1]);
    }
    hulls += hullArea(corners);
    pixels += sizes[k];
  }
  return hulls > 0 ? pixels / hulls : 0;
}

/** gate.lung_field_stats of the segmenter's size x size probabilities. */
export function lungFieldStats(probability, size, rules) {
  const mask = new Uint8Array(size * size);
  let pixels = 0, sum = 0, rowSum = 0, r0 = size, r1 = -1, c0 = size, c1 = -1;
  for (let i = 0; i < mask.length; i++) {
    if (probability[i] < 0.5) continue;
    mask[i] = 1;
    pixels++;
    sum += probability[i];
    const r = Math.floor(i / size), c = i - r * size;
    rowSum += r;
    r0 = Math.min(r0, r); r1 = Math.max(r1, r); c0 = Math.min(c0, c); c1 = Math.max(c1, c);
  }
  if (pixels === 0) return { area: 0, confidence: 0, outline: 0, extent: 0, solidity: 0, centre_row: 0, mask };
  const edges = boundary(mask, size, size).reduce((a, b) => a + b, 0);
  return {
    area: pixels / mask.length,
    confidence: sum / pixels,
    outline: edges / Math.sqrt(pixels),
    extent: pixels / ((r1 - r0 + 1) * (c1 - c0 + 1)),
    solidity: mainSolidity(mask, size, size, rules.gate._MAIN_COMPONENT_SHARE),
    centre_row: (rowSum / pixels + 0.5) / size,
    mask,
  };
}

function lungFieldProblem(s, g) {
  const [low, high] = g.LUNG_AREA_RANGE;
  if (s.area < low) return `no lung fields found (lung area ${percent(s.area, 1)} of the image, needs ${percent(low, 0)})`;
  if (s.area > high) return `implausibly large lung fields (${percent(s.area, 0)} of the image, at most ${percent(high, 0)})`;
  if (s.confidence < g.MIN_LUNG_CONFIDENCE) {
    return `the lung segmenter is unsure (mean probability ${fixed(s.confidence, 3)} inside the lung fields, needs ${plain(g.MIN_LUNG_CONFIDENCE)})`;
  }
  if (s.outline > g.MAX_OUTLINE_COMPLEXITY) return `ragged lung fields (outline ${fixed(s.outline, 1)}, at most ${general(g.MAX_OUTLINE_COMPLEXITY)})`;
  if (s.extent < g.MIN_LUNG_EXTENT) return `scattered lung fields (${percent(s.extent, 0)} of their bounding box, needs ${percent(g.MIN_LUNG_EXTENT, 0)})`;
  if (s.solidity < g.MIN_LUNG_SOLIDITY) return `lung fields of implausible shape (solidity ${fixed(s.solidity, 2)}, needs ${plain(g.MIN_LUNG_SOLIDITY)})`;
  if (s.centre_row > g.MAX_LUNG_CENTRE_ROW) {
    return `lung fields too low in the image (centre at ${percent(s.centre_row, 0)} of its height, at most ${percent(g.MAX_LUNG_CENTRE_ROW, 0)})`;
  }
  return null;
}

/** gate.check_lung_fields; returns the check and the statistics. */
export function checkLungFields(probability, size, rules) {
  const stats = lungFieldStats(probability, size, rules);
  const problem = lungFieldProblem(stats, rules.gate);
  if (problem !== null) return { check: failed("lung_fields", `${problem}: not a frontal chest radiograph`), stats };
  const detail = `lung fields cover ${percent(stats.area, 0)} of the image (mean probability ${fixed(stats.confidence, 3)}, ` +
    `outline ${fixed(stats.outline, 1)}, extent ${fixed(stats.extent, 2)}, solidity ${fixed(stats.solidity, 2)})`;
  return { check: passed("lung_fields", detail), stats };
}

// ---------------------------------------------------------------- view (frontal or lateral)
function standardised(values) {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / n);
  return values.map((v) => (v - mean) / (std + 1e-6));
}

/** cv2.Sobel (3 x 3, BORDER_REFLECT_101) along x (dx) or y. */
function sobel(img, n, dx) {
  const at = (k) => (k < 0 ? -k : k >= n ? 2 * n - 2 - k : k);
  const out = new Float64Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const p = (yy, xx) => img[at(yy) * n + at(xx)];
      out[y * n + x] = dx
        ? p(y - 1, x + 1) + 2 * p(y, x + 1) + p(y + 1, x + 1) - p(y - 1, x - 1) - 2 * p(y, x - 1) - p(y + 1, x - 1)
        : p(y + 1, x - 1) + 2 * p(y + 1, x) + p(y + 1, x + 1) - p(y - 1, x - 1) - 2 * p(y - 1, x) - p(y - 1, x + 1);
    }
  }
  return out;
}

/** view.edge_orientations: per cell, the share of gradient magnitude in each orientation bin. */
function edgeOrientations(thumb, n, v) {
  const gx = sobel(thumb, n, true);
  const gy = sobel(thumb, n, false);
  const side = Math.floor(n / v.GRADIENT_CELLS);
  const out = [];
  for (let row = 0; row < v.GRADIENT_CELLS; row++) {
    for (let col = 0; col < v.GRADIENT_CELLS; col++) {
      const counts = new Float64Array(v.GRADIENT_BINS);
      for (let y = row * side; y < (row + 1) * side; y++) {
        for (let x = col * side; x < (col + 1) * side; x++) {
          const i = y * n + x;
          let angle = Math.atan2(gy[i], gx[i]) % Math.PI;
          if (angle < 0) angle += Math.PI;
          const bin = Math.min(Math.floor((angle / Math.PI) * v.GRADIENT_BINS), v.GRADIENT_BINS - 1);
          counts[bin] += Math.hypot(gx[i], gy[i]);
        }
      }
      const total = counts.reduce((a, b) => a + b, 0);
      for (const c of counts) out.push(c / (total + 1e-6));
    }
  }
  return out;
}

/** view.view_features of the working image (rows x cols) and the size x size lung probabilities. */
export function viewFeatures(work, rows, cols, probability, size, rules) {
  const v = rules.view;
  const n = v.THUMBNAIL;
  // float32 like OpenCV's output: equal pixels must stay exactly equal, or a flat region's zero gradient
  // component becomes +-1e-16 and its orientation jumps bins (0 and 180 degrees, or 90 degrees)
  const image = Float32Array.from(resize(work, rows, cols, n, n, "area"));
  const lungs = Float32Array.from(resize(probability, size, size, n, n, "area"));
  const columnMeans = [], rowMeans = [];
  for (let x = 0; x < n; x++) { let s = 0; for (let y = 0; y < n; y++) s += image[y * n + x]; columnMeans.push(s / n); }
  for (let y = 0; y < n; y++) { let s = 0; for (let x = 0; x < n; x++) s += image[y * n + x]; rowMeans.push(s / n); }
  const columns = standardised(columnMeans);
  const rowsProfile = standardised(rowMeans);
  const asymmetry = columns.map((c, k) => Math.abs(c - columns[n - 1 - k]));
  const profiles = [columns, rowsProfile, asymmetry].map((p) => Array.from(resize(Float64Array.from(p), 1, n, 1, v.PROFILE, "linear")));
  let left = 0, all = 0;
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) { all += lungs[y * n + x]; if (x < n / 2) left += lungs[y * n + x]; }
  const grid = v.FEATURE_GRID;
  return [
    ...standardised(Array.from(resize(image, n, n, grid, grid, "area"))),
    ...Array.from(resize(lungs, n, n, grid, grid, "area")),
    ...profiles.flat(),
    left / (all + 1e-6),
    Math.log(rows / cols),
    ...edgeOrientations(image, n, v),
  ];
}

/** view.ViewModel.probability: the stored standardised logistic regression on the view features. */
function modelProbability(model, features) {
  let z = model.bias;
  for (let k = 0; k < features.length; k++) z += ((features[k] - model.mean[k]) / model.scale[k]) * model.weights[k];
  return 1 / (1 + Math.exp(-Math.min(60, Math.max(-60, z))));
}

/** view.check_view: P(lateral) from the stored logistic regression; above its threshold: "lateral view". */
export function checkView(work, rows, cols, probability, size, rules) {
  const model = rules.view.model;
  const features = viewFeatures(work, rows, cols, probability, size, rules);
  const p = modelProbability(model, features);
  if (p > model.threshold) {
    const detail = `lateral view (P(lateral) ${fixed(p, 3)} > ${fixed(model.threshold, 3)}); only frontal views are screened`;
    return { check: failed("view", detail), probability: p, features };
  }
  return { check: passed("view", `frontal view (P(lateral) ${fixed(p, 3)})`), probability: p, features };
}

/** view.check_ct_picture on the features checkView computed: a picture of an axial CT slice fails. */
export function checkCtPicture(features, rules) {
  const model = rules.view.ct_picture_model;
  const p = modelProbability(model, features);
  if (p > model.threshold) {
    const detail = `a picture of an axial CT slice (P ${fixed(p, 3)} > ${fixed(model.threshold, 3)}), not a radiograph: screen the CT series as DICOM`;
    return { check: failed("ct_picture", detail), probability: p };
  }
  return { check: passed("ct_picture", `not a CT slice picture (P ${fixed(p, 3)})`), probability: p };
}

// ---------------------------------------------------------------- verdict
/** gate.gate_verdict: accepted only if every check passed; the reason is the first failed detail. */
export function gateVerdict(checks, imageType) {
  const bad = checks.filter((c) => !c.passed);
  if (bad.length) return { accepted: false, image_type: "unknown", reason: bad[0].detail, checks };
  const what = { chest_radiograph: "frontal chest radiograph", chest_ct: "chest CT" }[imageType] || "input";
  const names = checks.map((c) => c.name).join(", ") || "none";
  return { accepted: true, image_type: imageType, reason: `accepted as a ${what} (${checks.length} checks passed: ${names})`, checks };
}
