// chestlens page: the slices of a CT series uploaded from this tab, read in the browser for the slice
// browser (app.js). The server's API gives a series result one overview strip of 8 slices, not per-slice
// images, so the page reads the files it uploaded itself: a zip (stored or deflated members), DICOM
// (Explicit or Implicit VR Little Endian; pixel data uncompressed or JPEG Lossless, process 14, the usual
// CT archive syntax), sorted as chestlens.io.series sorts a series (position along the slice normal, then
// Slice Location, then Instance Number, then file name), in Hounsfield units shown through the lung window
// of chestlens.io.windowing. Nothing leaves the browser. Loaded as a classic script (window.chestlensSlices)
// and by the tests as a CommonJS module.
"use strict";

(function (root) {
  const EXPLICIT = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
  const IMPLICIT = "1.2.840.10008.1.2";
  const NATIVE = new Set([IMPLICIT, "1.2.840.10008.1.2.1"]);
  const UNPARSED = { "1.2.840.10008.1.2.2": "Explicit VR Big Endian", "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian" };
  const JPEG_LOSSLESS = new Set(["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"]);
  /** chestlens.io.windowing.WINDOWS["lung"]: centre and width in HU. */
  const LUNG_WINDOW = [-600, 1500];

  // ------------------------------------------------------------------------------------------- zip
  /** The members of a zip archive: [{name, bytes: Uint8Array}] (directories and __MACOSX skipped). */
  async function unzip(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let end = -1;
    for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
      if (view.getUint32(i, true) === 0x06054b50) { end = i; break; }
    }
    if (end < 0) throw new Error("not a zip archive");
    const count = view.getUint16(end + 10, true);
    let at = view.getUint32(end + 16, true);
    if (at === 0xffffffff) throw new Error("zip64 archives are not read in the browser");
    const members = [];
    for (let k = 0; k < count; k++) {
      if (view.getUint32(at, true) !== 0x02014b50) throw new Error("damaged zip directory");
      const method = view.getUint16(at + 10, true);
      const size = view.getUint32(at + 20, true);
      const nameLength = view.getUint16(at + 28, true);
      const extra = view.getUint16(at + 30, true);
      const comment = view.getUint16(at + 32, true);
      const local = view.getUint32(at + 42, true);
      const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
      at += 46 + nameLength + extra + comment;
      const base = name.split("/").pop();
      if (name.endsWith("/") || name.startsWith("__MACOSX/") || base.startsWith(".")) continue;
      const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
      const data = bytes.subarray(start, start + size);
      if (method === 0) members.push({ name, bytes: data });
      else if (method === 8) members.push({ name, bytes: await inflate(data) });
      else throw new Error(`zip member ${name}: compression method ${method} is not read in the browser`);
    }
    return members;
  }

  async function inflate(data) {
    const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // ----------------------------------------------------------------------------------------- DICOM
  const tagKey = (group, element) => group * 0x10000 + element;
  const WANTED = {
    [tagKey(0x0002, 0x0010)]: "syntax",
    [tagKey(0x0008, 0x0060)]: "modality",
    [tagKey(0x0020, 0x000e)]: "series",
    [tagKey(0x0020, 0x0013)]: "instance",
    [tagKey(0x0020, 0x0032)]: "position",
    [tagKey(0x0020, 0x0037)]: "orientation",
    [tagKey(0x0020, 0x1041)]: "location",
    [tagKey(0x0028, 0x0002)]: "samples",
    [tagKey(0x0028, 0x0004)]: "photometric",
    [tagKey(0x0028, 0x0008)]: "frames",
    [tagKey(0x0028, 0x0010)]: "rows",
    [tagKey(0x0028, 0x0011)]: "cols",
    [tagKey(0x0028, 0x0100)]: "bitsAllocated",
    [tagKey(0x0028, 0x0101)]: "bitsStored",
    [tagKey(0x0028, 0x0103)]: "signed",
    [tagKey(0x0028, 0x1052)]: "intercept",
    [tagKey(0x0028, 0x1053)]: "slope",
  };
  const US = new Set(["samples", "rows", "cols", "bitsAllocated", "bitsStored", "signed"]);

  /** Header fields and where the pixel data lies, or null for a file that is not DICOM. */
  function parseDicom(bytes) {
    if (bytes.length < 132 || String.fromCharCode(...bytes.subarray(128, 132)) !== "DICM") return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const header = { pixel: null };
    const text = (start, length) => new TextDecoder().decode(bytes.subarray(start, start + length)).replace(/[\0 ]+$/, "").trim();
    let explicit = true;
    let inMeta = true;
    let at = 132;
    while (at + 8 <= bytes.length) {
      const group = view.getUint16(at, true);
      if (inMeta && group !== 0x0002) { // the file meta group is always Explicit VR Little Endian
        inMeta = false;
        const syntax = header.syntax || IMPLICIT;
        if (syntax in UNPARSED) return { ...header, unsupported: `${syntax} (${UNPARSED[syntax]})` };
        if (!NATIVE.has(syntax) && !JPEG_LOSSLESS.has(syntax)) header.unsupported = syntax;
        explicit = syntax !== IMPLICIT;
      }
      const element = view.getUint16(at + 2, true);
      let vr = null;
      let length;
      let valueAt;
      if (group === 0xfffe) { // an item or delimiter outside a sequence: malformed, stop
        break;
      } else if (explicit) {
        vr = String.fromCharCode(bytes[at + 4], bytes[at + 5]);
        if (EXPLICIT.has(vr)) { length = view.getUint32(at + 8, true); valueAt = at + 12; } else { length = view.getUint16(at + 6, true); valueAt = at + 8; }
      } else {
        length = view.getUint32(at + 4, true);
        valueAt = at + 8;
      }
      const key = tagKey(group, element);
      if (key === tagKey(0x7fe0, 0x0010)) {
        header.pixel = length === 0xffffffff ? { fragments: fragments(view, valueAt) } : { offset: valueAt, length };
        break;
      }
      if (length === 0xffffffff) { at = skipUndefined(view, valueAt, explicit); continue; }
      const name = WANTED[key];
      if (name) {
        if (US.has(name)) header[name] = view.getUint16(valueAt, true);
        else header[name] = text(valueAt, length);
      }
      at = valueAt + length;
    }
    return header;
  }

  /** Offset after a sequence (or item) of undefined length that starts at `at`. */
  function skipUndefined(view, at, explicit) {
    while (at + 8 <= view.byteLength) {
      const group = view.getUint16(at, true);
      const element = view.getUint16(at + 2, true);
      const length = view.getUint32(at + 4, true);
      if (group === 0xfffe && element === 0xe0dd) return at + 8; // sequence delimiter
      if (group === 0xfffe && element === 0xe000) { // item
        at = length === 0xffffffff ? skipItem(view, at + 8, explicit) : at + 8 + length;
        continue;
      }
      throw new Error("malformed DICOM sequence");
    }
    throw new Error("truncated DICOM sequence");
  }

  function skipItem(view, at, explicit) {
    while (at + 8 <= view.byteLength) {
      const group = view.getUint16(at, true);
      const element = view.getUint16(at + 2, true);
      if (group === 0xfffe && element === 0xe00d) return at + 8; // item delimiter
      let length;
      let valueAt;
      if (explicit) {
        const vr = String.fromCharCode(view.getUint8(at + 4), view.getUint8(at + 5));
        if (EXPLICIT.has(vr)) { length = view.getUint32(at + 8, true); valueAt = at + 12; } else { length = view.getUint16(at + 6, true); valueAt = at + 8; }
      } else { length = view.getUint32(at + 4, true); valueAt = at + 8; }
      at = length === 0xffffffff ? skipUndefined(view, valueAt, explicit) : valueAt + length;
    }
    throw new Error("truncated DICOM item");
  }

  /** Encapsulated pixel data: [offset, length] of each fragment after the basic offset table. */
  function fragments(view, at) {
    const out = [];
    let first = true;
    while (at + 8 <= view.byteLength) {
      const group = view.getUint16(at, true);
      const element = view.getUint16(at + 2, true);
      const length = view.getUint32(at + 4, true);
      if (group === 0xfffe && element === 0xe0dd) break;
      if (!first) out.push([at + 8, length]);
      first = false;
      at += 8 + length;
    }
    return out;
  }

  // ------------------------------------------------------------------------- JPEG Lossless (ITU T.81 H)
  /** Decode a one-component lossless JPEG (SOF3, any predictor, point transform, restart intervals)
   *  to {rows, cols, precision, samples: Uint16Array}. */
  function decodeJpegLossless(data) {
    const tables = {};
    let frame = null;
    let restart = 0;
    let at = 2;
    if (data[0] !== 0xff || data[1] !== 0xd8) throw new Error("not a JPEG stream");
    for (;;) {
      while (data[at] === 0xff && data[at + 1] === 0xff) at++;
      if (data[at] !== 0xff) throw new Error("JPEG marker expected");
      const marker = data[at + 1];
      const length = (data[at + 2] << 8) | data[at + 3];
      const body = at + 4;
      if (marker === 0xc4) {
        let p = body;
        while (p < at + 2 + length) {
          const id = data[p] & 0x0f;
          const counts = data.subarray(p + 1, p + 17);
          const total = counts.reduce((a, b) => a + b, 0);
          tables[id] = huffman(counts, data.subarray(p + 17, p + 17 + total));
          p += 17 + total;
        }
      } else if (marker === 0xdd) {
        restart = (data[body] << 8) | data[body + 1];
      } else if (marker === 0xc3) {
        frame = { precision: data[body], rows: (data[body + 1] << 8) | data[body + 2], cols: (data[body + 3] << 8) | data[body + 4], components: data[body + 5] };
        if (frame.components !== 1) throw new Error("JPEG Lossless with several components is not read in the browser");
      } else if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        throw new Error("not a lossless (process 14) JPEG");
      } else if (marker === 0xda) {
        if (!frame) throw new Error("JPEG scan before its frame header");
        const table = tables[data[body + 2] >> 4];
        const predictor = data[body + 3];
        const shift = data[body + 5] & 0x0f;
        return { ...frame, samples: losslessScan(data, at + 2 + length, frame, table, predictor, shift, restart) };
      }
      at += 2 + length;
    }
  }

  /** Canonical Huffman table: for each code length, the first code, the last code and the value index. */
  function huffman(counts, symbols) {
    const maxcode = new Int32Array(18).fill(-1);
    const valptr = new Int32Array(17);
    const mincode = new Int32Array(17);
    let code = 0;
    let k = 0;
    for (let length = 1; length <= 16; length++) {
      valptr[length] = k;
      mincode[length] = code;
      code += counts[length - 1];
      k += counts[length - 1];
      maxcode[length] = counts[length - 1] ? code - 1 : -1;
      code <<= 1;
    }
    maxcode[17] = 0x7fffffff;
    return { maxcode, valptr, mincode, symbols };
  }

  function losslessScan(data, start, frame, table, predictor, shift, restart) {
    const { rows, cols, precision } = frame;
    const out = new Uint16Array(rows * cols);
    let at = start;
    let bits = 0;
    let count = 0;
    const bit = () => {
      if (count === 0) {
        if (data[at] === 0xff) {
          const next = data[at + 1];
          if (next === 0x00) { bits = 0xff; at += 2; } else { bits = 0; } // a marker: pad with zeros
        } else bits = data[at++];
        count = 8;
      }
      count--;
      return (bits >> count) & 1;
    };
    const receive = (n) => { let v = 0; for (let i = 0; i < n; i++) v = (v << 1) | bit(); return v; };
    const decodeSymbol = () => {
      let code = bit();
      let length = 1;
      while (code > table.maxcode[length]) { code = (code << 1) | bit(); length++; if (length > 16) throw new Error("bad Huffman code"); }
      return table.symbols[table.valptr[length] + code - table.mincode[length]];
    };
    const initial = 1 << (precision - shift - 1);
    let firstLine = 0; // the row where prediction restarts (image start or restart interval)
    let done = 0;
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        if (restart && done && done % restart === 0) { // restart marker: byte-align, skip RSTn
          count = 0;
          while (at < data.length && !(data[at] === 0xff && data[at + 1] >= 0xd0 && data[at + 1] <= 0xd7)) at++;
          at += 2;
          firstLine = y;
        }
        const s = decodeSymbol();
        let diff = 0;
        if (s === 16) diff = 32768;
        else if (s) { diff = receive(s); if (diff < 1 << (s - 1)) diff -= (1 << s) - 1; }
        const i = y * cols + x;
        let p;
        if (y === firstLine) p = x === 0 ? initial : out[i - 1];
        else if (x === 0) p = out[i - cols];
        else {
          const a = out[i - 1], b = out[i - cols], c = out[i - cols - 1];
          p = [0, a, b, c, a + b - c, a + ((b - c) >> 1), b + ((a - c) >> 1), (a + b) >> 1][predictor];
        }
        out[i] = (p + diff) & 0xffff; // modulo 2^16 (T.81 H.2.1)
        done++;
      }
    }
    if (shift) for (let i = 0; i < out.length; i++) out[i] <<= shift;
    return out;
  }

  // -------------------------------------------------------------------------------------- the series
  /** Read the DICOM headers of the uploaded files and sort them as chestlens.io.series does; the largest
   *  series wins, as on the server. Returns {slices: [{name, header, bytes}], sortedBy} or throws. */
  function sortSeries(files) {
    const parsed = [];
    for (const file of files) {
      const header = parseDicom(file.bytes);
      if (header && (header.pixel || header.unsupported)) parsed.push({ name: file.name, header, bytes: file.bytes });
    }
    if (!parsed.length) throw new Error("no DICOM images among the uploaded files");
    const groups = new Map();
    for (const item of parsed) {
      const key = item.header.series || "";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    const items = [...groups.values()].sort((a, b) => b.length - a.length)[0];
    const nums = (text, n) => { const v = (text || "").split("\\").map(Number); return v.length === n && v.every(Number.isFinite) ? v : null; };
    const numbers = items.map((s) => (s.header.instance ? Number(s.header.instance) : null));
    const positions = items.map((s) => nums(s.header.position, 3));
    const orientations = items.map((s) => nums(s.header.orientation, 6));
    const locations = items.map((s) => (s.header.location ? Number(s.header.location) : null));
    const mixed = new Set(orientations.filter(Boolean).map((o) => o.map((v) => v.toFixed(4)).join())).size > 1;
    let keys = null;
    let sortedBy;
    if (!mixed && positions.every(Boolean) && orientations.every(Boolean)) {
      const o = orientations[0];
      let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
      const norm = Math.hypot(...n);
      n = n.map((v) => v / norm);
      const largest = n.reduce((best, v, k) => (Math.abs(v) > Math.abs(n[best]) ? k : best), 0);
      if (n[largest] < 0) n = n.map((v) => -v);
      keys = positions.map((p) => p[0] * n[0] + p[1] * n[1] + p[2] * n[2]);
      sortedBy = "image_position";
    } else if (locations.every((v) => v !== null && Number.isFinite(v))) {
      keys = locations;
      sortedBy = "slice_location";
    } else sortedBy = numbers.every((v) => v !== null) ? "instance_number" : "file_name";
    const order = items.map((_, i) => i);
    const byName = (i, j) => (items[i].name < items[j].name ? -1 : items[i].name > items[j].name ? 1 : 0);
    if (keys) order.sort((i, j) => keys[i] - keys[j] || (numbers[i] || 0) - (numbers[j] || 0) || byName(i, j));
    else if (sortedBy === "instance_number") order.sort((i, j) => numbers[i] - numbers[j] || byName(i, j));
    else order.sort(byName);
    return { slices: order.map((i) => ({ ...items[i], position: keys ? keys[i] : null })), sortedBy };
  }

  /** Hounsfield units of one slice: {rows, cols, hu: Float32Array}. */
  function sliceHu(slice) {
    const h = slice.header;
    if (h.unsupported) throw new Error(`DICOM transfer syntax ${h.unsupported} is not read in the browser`);
    if ((h.samples || 1) !== 1) throw new Error("colour DICOM is not a CT slice");
    const rows = h.rows, cols = h.cols, count = rows * cols;
    const bytes = slice.bytes;
    let raw;
    if (h.pixel.fragments) {
      const total = h.pixel.fragments.reduce((a, [, n]) => a + n, 0);
      const joined = new Uint8Array(total);
      let k = 0;
      for (const [offset, n] of h.pixel.fragments) { joined.set(bytes.subarray(offset, offset + n), k); k += n; }
      const decoded = decodeJpegLossless(joined);
      if (decoded.rows !== rows || decoded.cols !== cols) throw new Error("JPEG size differs from the DICOM header");
      raw = decoded.samples;
    } else if (h.bitsAllocated === 16) {
      raw = new Uint16Array(count);
      const view = new DataView(bytes.buffer, bytes.byteOffset + h.pixel.offset, count * 2);
      for (let i = 0; i < count; i++) raw[i] = view.getUint16(2 * i, true);
    } else if (h.bitsAllocated === 8) raw = bytes.subarray(h.pixel.offset, h.pixel.offset + count);
    else throw new Error(`${h.bitsAllocated}-bit DICOM is not read in the browser`);
    const stored = h.bitsStored || h.bitsAllocated || 16;
    const slope = h.slope ? Number(h.slope.split("\\")[0]) : 1;
    const intercept = h.intercept ? Number(h.intercept.split("\\")[0]) : 0;
    const hu = new Float32Array(count);
    const sign = 1 << (stored - 1);
    const bits = (1 << stored) - 1;
    for (let i = 0; i < count; i++) {
      let v = raw[i] & bits;
      if (h.signed === 1 && v & sign) v -= 1 << stored;
      hu[i] = v * slope + intercept;
    }
    return { rows, cols, hu };
  }

  /** 8-bit grey of HU through a window (chestlens.io.windowing.apply_window), default the lung window. */
  function windowed(hu, [centre, width] = LUNG_WINDOW) {
    const low = centre - width / 2;
    const out = new Uint8ClampedArray(hu.length);
    for (let i = 0; i < hu.length; i++) out[i] = Math.round(255 * Math.min(1, Math.max(0, (hu[i] - low) / width)));
    return out;
  }

  /** The uploaded files of a series ([File]; one zip or several DICOM files) as sorted slices. */
  async function readSeries(files) {
    let entries = [];
    for (const file of files) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const zip = bytes.length > 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3 && bytes[3] === 4;
      if (zip) entries = entries.concat(await unzip(bytes));
      else entries.push({ name: file.webkitRelativePath || file.name, bytes });
    }
    return sortSeries(entries);
  }

  const api = { unzip, parseDicom, decodeJpegLossless, sortSeries, sliceHu, windowed, readSeries, LUNG_WINDOW };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.chestlensSlices = api;
})(typeof window !== "undefined" ? window : globalThis);
