"""Loading and saving models: one clear error for bad files, atomic writes, external data, >2 GiB."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from hyperonnx.errors import HyperonnxError

# protobuf refuses to serialise messages of 2 GiB or more; leave headroom for the graph itself.
PROTOBUF_LIMIT = (2 << 30) - (64 << 20)


def load(path: str | os.PathLike, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, turning every kind of bad input into one HyperonnxError line."""
    path = Path(path)
    if not path.exists():
        raise HyperonnxError(f"{path}: no such file")
    if path.is_dir():
        raise HyperonnxError(f"{path}: is a directory, expected an .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise HyperonnxError(f"{path}: not a readable ONNX model ({_short(exc)})") from None
    except Exception as exc:  # protobuf raises a variety of internal errors on garbage
        raise HyperonnxError(f"{path}: not a readable ONNX model ({_short(exc)})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.initializer):
        raise HyperonnxError(f"{path}: not an ONNX model (no graph)")
    if load_external_data:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise HyperonnxError(f"{path}: cannot read its external data ({_short(exc)})") from None
    return model


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def external_files(model_path: str | os.PathLike) -> list[Path]:
    """External data files referenced by a saved model (for size accounting)."""
    model_path = Path(model_path)
    model = onnx.load(str(model_path), load_external_data=False)
    names = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return [model_path.parent / name for name in sorted(names)]


def file_size(model_path: str | os.PathLike) -> int:
    """Bytes on disk of a model, its external data included."""
    model_path = Path(model_path)
    total = model_path.stat().st_size
    for extra in external_files(model_path):
        if extra.exists():
            total += extra.stat().st_size
    return total


def save(model: onnx.ModelProto, path: str | os.PathLike, external_data: bool | None = None) -> None:
    """Write ``model`` to ``path`` atomically; external data (``<name>.data``) when asked or when needed.

    Files are written into a temporary folder beside the target and renamed into place, so an interrupted
    run never leaves a half-written model. ``model`` may be modified (tensor data moved out).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise HyperonnxError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise HyperonnxError(f"{path}: output folder {folder} is not writable")
    if external_data is None:
        external_data = model.ByteSize() > PROTOBUF_LIMIT if _small_enough_to_measure(model) else True
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".hyperonnx-", dir=folder))
    except OSError as exc:
        raise HyperonnxError(f"{path}: cannot write ({exc.strerror or exc})") from None
    data_name = path.name + ".data"
    final_data = folder / data_name
    backup = tmp / (data_name + ".previous")
    placed_data = False  # final_data now holds this save's data (undone on any failure below)
    done = False
    try:
        target = tmp / path.name
        data = tmp / data_name
        if external_data:
            onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            if data.exists():
                os.chmod(data, 0o644)  # onnx writes 0600; models are shared between users and containers
        else:
            onnx.save_model(model, str(target))
            # an older external data file of another save (OUT.data) is left alone: the user's files
        os.chmod(target, 0o644)
        # Commit: the data first (the model names it), then the model. A previous OUT.data is kept (a second
        # link in our temporary folder) until the model is in place, so a failure between the two renames
        # restores it; OUT.data itself is only ever replaced atomically, never missing.
        if external_data and data.exists():
            if final_data.exists():
                try:
                    os.link(final_data, backup)
                except OSError:
                    shutil.copy2(final_data, backup)
            os.replace(data, final_data)
            placed_data = True
        os.replace(target, path)
        done = True
    except OSError as exc:
        raise HyperonnxError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if not done:
            if placed_data:
                _unlink_quietly(final_data)
            if backup.exists():
                try:
                    os.replace(backup, final_data)
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _small_enough_to_measure(model: onnx.ModelProto) -> bool:
    # ByteSize itself fails past 2 GiB with some protobuf builds; count the tensors first.
    total = 0
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        total += len(tensor.raw_data)
        if total > PROTOBUF_LIMIT:
            return False
    return True
