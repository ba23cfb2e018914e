import os
import sys
from pathlib import Path

# Tests import the checkout's hyperonnx, the helpers in tests/ (toymodels) and the real models and their task
# metrics in benchmarks/ (realmodels, fidelity), whichever folder under tests/ they sit in. Some reuse helpers of
# another area's test module (test_ops_decode's model builders, test_grid's GGUF-like weights), so every area's
# folder is on the path too: a file runs alone as it runs in the whole suite.
ROOT = Path(__file__).resolve().parents[1]
AREAS = ("codec", "passes", "ops", "reliability", "platform", "models")
for folder in (*(ROOT / "tests" / area for area in AREAS), ROOT / "benchmarks", ROOT / "tests", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
