#!/usr/bin/env python3
"""Reference detections for a darknet YOLO on a photo, from OpenCV's own darknet loader
(cv2.dnn.readNetFromDarknet): the independent implementation vr-stream's detector is
compared with.

    yolo-reference.py DARKNET_DIR PHOTO [--size 320] [--conf 0.25] [--nms 0.45]

The photo is letterboxed to SIZE x SIZE (scale to fit, centred, grey 0.5 padding, bilinear)
as vr-stream does; score = objectness x class score; boxes with score >= conf, per-class
NMS at IoU nms (cv2.dnn.NMSBoxes). Prints JSON: {"size", "photo": [w, h], "detections":
[{"class": id, "name", "score", "box": [x0, y0, x1, y1] in photo pixels}]}, best first.
"""
import argparse
import json
import os

import cv2
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("darknet_dir")
    ap.add_argument("photo")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--nms", type=float, default=0.45)
    a = ap.parse_args()
    d = a.darknet_dir
    names = open(os.path.join(d, "coco.names")).read().split("\n")
    img = cv2.imread(a.photo)
    if img is None:
        raise SystemExit(f"{a.photo}: cannot read")
    img = np.ascontiguousarray(img[:, :, ::-1])
    h, w = img.shape[:2]
    s = a.size
    r = min(s / w, s / h)
    nw, nh = round(w * r), round(h * r)
    dx, dy = (s - nw) // 2, (s - nh) // 2
    lb = np.full((s, s, 3), 127.5, np.float32)
    lb[dy:dy + nh, dx:dx + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    blob = np.ascontiguousarray((lb / 255.0).transpose(2, 0, 1)[None]).astype(np.float32)
    net = cv2.dnn.readNetFromDarknet(os.path.join(d, "yolov3-tiny.cfg"), os.path.join(d, "yolov3-tiny.weights"))
    net.setInput(blob)
    out = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()), 0)
    boxes, scores, classes = [], [], []
    for row in out:
        c = int(np.argmax(row[5:]))
        score = float(row[5 + c])  # OpenCV already multiplies by the objectness
        if score < a.conf:
            continue
        cx, cy, bw, bh = row[0] * s, row[1] * s, row[2] * s, row[3] * s
        x0, y0 = (cx - bw / 2 - dx) / r, (cy - bh / 2 - dy) / r
        boxes.append([float(x0), float(y0), float(bw / r), float(bh / r)])
        scores.append(score)
        classes.append(c)
    dets = []
    for c in sorted(set(classes)):
        idx = [i for i in range(len(boxes)) if classes[i] == c]
        keep = cv2.dnn.NMSBoxes([boxes[i] for i in idx], [scores[i] for i in idx], a.conf, a.nms)
        for k in np.array(keep).flatten():
            i = idx[int(k)]
            x, y, bw, bh = boxes[i]
            dets.append({"class": c, "name": names[c], "score": round(scores[i], 5),
                         "box": [round(x, 2), round(y, 2), round(x + bw, 2), round(y + bh, 2)]})
    dets.sort(key=lambda d: -d["score"])
    print(json.dumps({"size": s, "photo": [w, h], "detections": dets}, indent=1))


if __name__ == "__main__":
    main()
