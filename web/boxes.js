// YOLO detection boxes (vr-stream --yolo), painted on a 2D canvas: by the page over its
// 2D view and, in the headset, into the overlay texture blended over the video (xr.js).
// `m` is a `detections` message: { w, h, boxes: [{ c: COCO class, s: score 0..1,
// b: [x0, y0, x1, y1] in frame pixels }] }.

/** COCO class names, by the index the detector reports. */
export const COCO = ('person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign ' +
  'parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie ' +
  'suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket ' +
  'bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake ' +
  'chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven ' +
  'toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush').split(' ').map((n) => n.replace(/_/g, ' '));

/** How long a set stays drawn without a newer one, ms: a stopped detector leaves no stale boxes. */
export const BOXES_TTL_MS = 500;

/**
 * Paints the boxes of `m` on `g`: frame pixel (x, y) lands at (ox + x k, oy + y k); `unit`
 * is one CSS pixel in canvas pixels (line width 2 units, labels 13 units tall); `fill`
 * (0..1) is the opacity of a box's interior tint (0: outline only). The caller clears.
 */
export function paintBoxes(g, m, { k, ox = 0, oy = 0, unit = 1, fill = 0 }) {
  g.lineWidth = 2 * unit;
  g.font = `${13 * unit}px system-ui, sans-serif`;
  for (const b of m.boxes) {
    const [x0, y0, x1, y1] = b.b;
    const colour = `hsl(${(b.c * 47) % 360} 90% 55%)`;
    const [x, y, w, h] = [ox + x0 * k, oy + y0 * k, (x1 - x0) * k, (y1 - y0) * k];
    if (fill > 0) {
      g.globalAlpha = fill;
      g.fillStyle = colour;
      g.fillRect(x, y, w, h);
      g.globalAlpha = 1;
    }
    g.strokeStyle = g.fillStyle = colour;
    g.strokeRect(x, y, w, h);
    // The label above the box, or inside it when the box touches the top.
    const ly = y - 4 * unit >= 13 * unit ? y - 4 * unit : y + 15 * unit;
    g.fillText(`${COCO[b.c] ?? b.c} ${(b.s * 100).toFixed(0)}%`, x + 3 * unit, ly);
  }
}
