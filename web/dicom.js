// DICOM in the browser with dicom-parser (global `dicomParser`, loaded by index.html), following
// chestlens.io.dicom: modality LUT; CT stays in Hounsfield units (windowed later with the model's
// ct_window); other grey images get the file's first window (LINEAR, LINEAR_EXACT, SIGMOID) or the data's
// min-max, and MONOCHROME1 is inverted last. Colour (RGB) is scaled by its bit depth and turned to grey
// with BT.601 weights. Only the first frame is read. The header fields the quality gate reads (web/gate.js)
// come back in `meta`.

const UNCOMPRESSED = {
  "1.2.840.10008.1.2": "Implicit VR Little Endian",
  "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
};
const BROWSER_JPEG = { "1.2.840.10008.1.2.4.50": "JPEG Baseline (8-bit)" };
const KNOWN = {
  "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
  "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
  "1.2.840.10008.1.2.4.51": "JPEG Extended (12-bit)",
  "1.2.840.10008.1.2.4.57": "JPEG Lossless",
  "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
  "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
  "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
  "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
  "1.2.840.10008.1.2.4.91": "JPEG 2000",
  "1.2.840.10008.1.2.5": "RLE Lossless",
};
export const LUMA = [0.299, 0.587, 0.114];

/** True when the bytes carry the DICOM preamble ("DICM" at offset 128). */
export function isDicom(bytes) {
  return bytes.length > 132 && bytes[128] === 68 && bytes[129] === 73 && bytes[130] === 67 && bytes[131] === 77;
}

function numbers(ds, tag) {
  const text = ds.string(tag);
  if (!text) return [];
  return text.split("\\").map(Number).filter((v) => Number.isFinite(v));
}

/** Share of pixels whose channels differ by more than `tolerance` ([0, 1] units): chestlens.io.colour's
 *  colour test (`channel(i, c)` gives channel c of pixel i in [0, 1]). */
export function colouredFraction(channel, count, tolerance) {
  let coloured = 0;
  for (let i = 0; i < count; i++) {
    const r = channel(i, 0), g = channel(i, 1), b = channel(i, 2);
    if (Math.max(r, g, b) - Math.min(r, g, b) > tolerance) coloured++;
  }
  return count ? coloured / count : 0;
}

/**
 * Decode a DICOM file to grey values. Returns {rows, cols, values: Float64Array, unit: "HU" | "unit",
 * meta: {format: "dicom", modality, bodyPart, view, photometric, frames, colouredFraction}} (text fields
 * trimmed, null when absent; colouredFraction null for grey images, see `colouredFraction`).
 * Throws an Error with a one-line reason for what the browser cannot decode.
 */
export async function readDicom(bytes, channelTolerance = 8 / 255) {
  let ds;
  try {
    ds = dicomParser.parseDicom(bytes);
  } catch (error) {
    throw new Error(`not a readable DICOM file (${error.exception || error.message || error})`);
  }
  const syntax = (ds.string("x00020010") || "1.2.840.10008.1.2").replace(/\0/g, "").trim();
  const pixel = ds.elements.x7fe00010;
  if (!pixel) throw new Error("this DICOM file holds no image (no Pixel Data)");
  const rows = ds.uint16("x00280010");
  const cols = ds.uint16("x00280011");
  const samples = ds.uint16("x00280002") || 1;
  const photometric = (ds.string("x00280004") || "MONOCHROME2").toUpperCase();
  const bitsAllocated = ds.uint16("x00280100");
  const bitsStored = ds.uint16("x00280101") || bitsAllocated;
  const signed = ds.uint16("x00280103") === 1;
  const text = (tag) => (ds.string(tag) || "").replace(/\0/g, "").trim() || null;
  const meta = {
    format: "dicom",
    modality: text("x00080060"),
    bodyPart: text("x00180015"),
    view: text("x00185101"),
    photometric: text("x00280004"),
    frames: Math.max(1, numbers(ds, "x00280008")[0] || 1),
    colouredFraction: null,
  };
  let raw;
  if (UNCOMPRESSED[syntax]) {
    raw = rawSamples(bytes, pixel, rows * cols * samples, bitsAllocated, bitsStored, signed);
  } else if (BROWSER_JPEG[syntax]) {
    raw = await jpegSamples(ds, pixel, rows, cols, samples);
  } else {
    const name = KNOWN[syntax] || "unknown";
    throw new Error(`DICOM transfer syntax ${syntax} (${name}) cannot be decoded in the browser; ` +
      "use uncompressed or JPEG Baseline DICOM, or screen it with `chestlens predict` / `chestlens serve`");
  }
  if (samples === 3) {
    const colour = colourToGrey(ds, raw, rows * cols, syntax);
    meta.colouredFraction = colouredFraction(colour.channel, rows * cols, channelTolerance);
    return { rows, cols, unit: "unit", values: colour.grey, meta };
  }
  if (samples !== 1 || !photometric.startsWith("MONOCHROME")) {
    throw new Error(`DICOM photometric interpretation ${photometric} is not supported in the browser`);
  }
  if (ds.elements.x00283000) throw new Error("DICOM Modality LUT Sequence is not supported in the browser");
  const slope = numbers(ds, "x00281053")[0] ?? 1;
  const intercept = numbers(ds, "x00281052")[0] ?? 0;
  const values = new Float64Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = raw[i] * slope + intercept;
  const modality = (ds.string("x00080060") || "").toUpperCase();
  const rescaleType = (ds.string("x00281054") || "").toUpperCase();
  if (modality === "CT" || rescaleType === "HU") return { rows, cols, unit: "HU", values, meta };
  if (ds.elements.x00283010) throw new Error("DICOM VOI LUT Sequence is not supported in the browser");
  const centre = numbers(ds, "x00281050")[0];
  const width = numbers(ds, "x00281051")[0];
  const fn = (ds.string("x00281056") || "LINEAR").toUpperCase();
  if (centre !== undefined && width !== undefined && width >= 1) window1(values, centre, width, fn);
  else minMax(values);
  const invert = photometric === "MONOCHROME1";
  for (let i = 0; i < values.length; i++) {
    const v = invert ? 1 - values[i] : values[i];
    values[i] = Math.min(1, Math.max(0, v));
  }
  return { rows, cols, unit: "unit", values, meta };
}

function rawSamples(bytes, pixel, count, bitsAllocated, bitsStored, signed) {
  const start = bytes.byteOffset + pixel.dataOffset;
  const buffer = bytes.buffer;
  if (bitsAllocated === 8) return new Uint8Array(buffer.slice(start, start + count));
  if (bitsAllocated !== 16) throw new Error(`DICOM with ${bitsAllocated} bits allocated is not supported in the browser`);
  const view = new DataView(buffer, start, count * 2);
  const out = new Int32Array(count);
  const shift = 32 - bitsStored;
  for (let i = 0; i < count; i++) {
    const v = view.getUint16(2 * i, true);
    out[i] = signed ? ((v << shift) >> shift) : v;
  }
  return out;
}

async function jpegSamples(ds, pixel, rows, cols, samples) {
  const frame = dicomParser.readEncapsulatedImageFrame(ds, pixel, 0);
  const bitmap = await createImageBitmap(new Blob([frame], { type: "image/jpeg" }),
    { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(cols, rows);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, cols, rows).data;
  const out = new Uint8Array(rows * cols * samples);
  for (let i = 0; i < rows * cols; i++) for (let c = 0; c < samples; c++) out[i * samples + c] = rgba[4 * i + c];
  return out;
}

function colourToGrey(ds, raw, count, syntax) {
  const planar = UNCOMPRESSED[syntax] ? ds.uint16("x00280006") === 1 : false;
  const scale = raw instanceof Uint8Array ? 255 : 65535;
  const channel = (i, c) => raw[planar ? c * count + i : 3 * i + c] / scale;
  const grey = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let sum = 0;
    for (let c = 0; c < 3; c++) sum += LUMA[c] * channel(i, c);
    grey[i] = Math.min(1, Math.max(0, sum));
  }
  return { grey, channel };
}

// pydicom's apply_windowing with an output range of [0, 1].
function window1(values, centre, width, fn) {
  if (fn === "SIGMOID") {
    for (let i = 0; i < values.length; i++) values[i] = 1 / (1 + Math.exp((-4 * (values[i] - centre)) / width));
    return;
  }
  const c = fn === "LINEAR_EXACT" ? centre : centre - 0.5;
  const w = fn === "LINEAR_EXACT" ? width : width - 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v <= c - w / 2) values[i] = 0;
    else if (v > c + w / 2) values[i] = 1;
    else values[i] = (v - c) / w + 0.5;
  }
}

function minMax(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) { if (v < low) low = v; if (v > high) high = v; }
  for (let i = 0; i < values.length; i++) values[i] = high > low ? (values[i] - low) / (high - low) : 0;
}
