import os
import sys
from pathlib import Path

# Tests import the checkout's hyperonnx and the helpers beside them.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
