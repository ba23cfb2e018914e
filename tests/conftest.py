import os
import sys
from pathlib import Path

# Tests import the checkout's hyperonnx, the helpers in tests/ (toymodels) and the real models and their task
# metrics in benchmarks/ (realmodels, fidelity), whichever folder under tests/ they sit in.
ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT / "benchmarks", ROOT / "tests", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
