"""Both cases of the torchvision compatibility module, each in a fresh interpreter.

Case 1 reproduces the failure of a CUDA torchvision wheel beside a CPU torch on any machine, by
making torch refuse to load torchvision's compiled extension, exactly as it does here. Case 2 is
an environment where torchvision's operators are defined (its extension loaded): the module must
change nothing.
"""

import json

EXTENSION_FAILS = """
import json, torch
def refuse(path):
    raise OSError("Could not load this library: " + str(path))
torch.ops.load_library = refuse
"""

EXTENSION_LOADS = """
import json, torch
from pathlib import Path
import importlib.util
spec = importlib.util.find_spec("torchvision")
so = next(Path(spec.origin).parent.glob("_C*.so"))
try:
    torch.ops.load_library(str(so))   # a matching torch/torchvision pair
except OSError:                       # CUDA wheel beside CPU torch: define what _C would
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
"""

BUILD_MODEL = """
from semlive.models import import_torchvision, compat_applied, compiled_ops_available
tv = import_torchvision()
model = tv.models.segmentation.deeplabv3_mobilenet_v3_large(
    weights=None, weights_backbone=None, num_classes=1).eval()
with torch.no_grad():
    shape = list(model(torch.rand(1, 3, 67, 45))["out"].shape)
try:
    tv.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)
    nms = "ran"
except RuntimeError as exc:
    nms = str(exc)
print(json.dumps({"applied": compat_applied(), "shape": shape, "nms": nms}))
"""


def test_cuda_torchvision_beside_cpu_torch_imports_and_builds_models(run_python):
    result = run_python(EXTENSION_FAILS + BUILD_MODEL)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["applied"] is True
    assert report["shape"] == [1, 1, 67, 45]
    assert "Couldn't load custom C++ ops" in report["nms"]


def test_does_nothing_where_torchvision_loads_normally(run_python):
    result = run_python(EXTENSION_LOADS + BUILD_MODEL)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["applied"] is False
    assert report["shape"] == [1, 1, 67, 45]


def test_plain_import_fails_without_the_module_where_the_extension_cannot_load(run_python):
    result = run_python(EXTENSION_FAILS + "import torchvision")
    assert result.returncode != 0
    assert "operator torchvision::nms does not exist" in result.stderr


CONCURRENT_IMPORTS = """
import threading
from semlive.models import import_torchvision
barrier, found = threading.Barrier(6), []
def load():
    barrier.wait()
    try:
        found.append(hasattr(import_torchvision().models.segmentation, "deeplabv3_resnet50"))
    except Exception as exc:
        found.append(f"{type(exc).__name__}: {exc}")
threads = [threading.Thread(target=load) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(found))
"""


def test_threads_importing_at_once_all_get_the_whole_module(run_python):
    """A run's warm-up and its first tile job once imported together: one thread retried the
    import while the other found a half-built torchvision (AttributeError: no ``models``).
    Without the lock this test failed in one run of three here (the race is timing's)."""
    result = run_python(EXTENSION_FAILS + CONCURRENT_IMPORTS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [True] * 6
