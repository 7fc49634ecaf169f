// Lung-field preprocessing for classifiers that read the lungs only: the same arithmetic as
// chestlens.data.lung_roi (lung_box, crop_fraction, nearest_resize, dilate), so the browser feeds the
// graph the pixels Python feeds the network. Masks are Uint8Array, row-major.

/** Bounding box of a mask (h x w) as fractions [top, bottom, left, right], widened by `margin` of its
 *  height/width on each side and clipped to [0, 1]; null when the mask is empty. */
export function lungBox(mask, h, w, margin) {
  let r0 = -1, r1 = -1, c0 = w, c1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      if (r0 < 0) r0 = y;
      r1 = y;
      if (x < c0) c0 = x;
      if (x > c1) c1 = x;
    }
  }
  if (r0 < 0) return null;
  const top = r0 / h, bottom = (r1 + 1) / h, left = c0 / w, right = (c1 + 1) / w;
  const dy = margin * (bottom - top), dx = margin * (right - left);
  return [Math.max(0, top - dy), Math.min(1, bottom + dy), Math.max(0, left - dx), Math.min(1, right + dx)];
}

/** Pixel rows (or columns) [first, stop) of a fractional span over `size` pixels. */
export function pixelSpan(start, stop, size) {
  const first = Math.min(size - 1, Math.floor(start * size));
  return [first, Math.max(first + 1, Math.ceil(stop * size))];
}

/** The part of a rows x cols array inside a fractional box: { values, rows, cols }. */
export function crop(values, rows, cols, box) {
  const [y0, y1] = pixelSpan(box[0], box[1], rows);
  const [x0, x1] = pixelSpan(box[2], box[3], cols);
  const out = new values.constructor((y1 - y0) * (x1 - x0));
  for (let y = y0; y < y1; y++) out.set(values.subarray(y * cols + x0, y * cols + x1), (y - y0) * (x1 - x0));
  return { values: out, rows: y1 - y0, cols: x1 - x0 };
}

/** Nearest-neighbour resize by pixel centres (torch "nearest-exact") of an h x w mask to H x W. */
export function resizeNearest(mask, h, w, H, W) {
  const out = new Uint8Array(H * W);
  for (let y = 0; y < H; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / H));
    for (let x = 0; x < W; x++) out[y * W + x] = mask[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / W))];
  }
  return out;
}

/** Binary dilation of a size x size mask by the disc dy² + dx² <= r². */
export function dilate(mask, size, r) {
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (!mask[y * size + x]) continue;
      for (let dy = -r; dy <= r; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= size) continue;
        for (let dx = -r; dx <= r; dx++) {
          const xx = x + dx;
          if (xx >= 0 && xx < size && dy * dy + dx * dx <= r * r) out[yy * size + xx] = 1;
        }
      }
    }
  }
  return out;
}
