"""Loading and saving models: one clear error for bad files, atomic writes, external data, >2 GiB.

Large models are converted without their external data in memory: :func:`load_lazy` reads the graph only and
checks every external reference; a weight's bytes are read when it is encoded (:func:`read_array`), and what is
not compressed is copied from the input's data file to the output's in chunks when saving (:func:`save` with
``source_dir``), byte for byte. What the converter makes (θ blobs) goes to a :class:`BlobSpool` as it is made and is
copied from there into the output's data file when saving, so no step holds the whole model's blobs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from hyperonnx import workspace
from hyperonnx.errors import HyperonnxError, short_reason

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
        raise HyperonnxError(f"{path}: not a readable ONNX model ({short_reason(exc)})") from None
    except Exception as exc:  # protobuf raises a variety of internal errors on garbage
        raise HyperonnxError(f"{path}: not a readable ONNX model ({short_reason(exc)})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.initializer):
        raise HyperonnxError(f"{path}: not an ONNX model (no graph)")
    where = next(_non_utf8_strings(model, "model"), None)
    if where is not None:
        raise HyperonnxError(f"{path}: not a valid ONNX model ({where} is not UTF-8 text)")
    if load_external_data:
        load_external(model, path)
    return model


def load_external(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Read the external data of ``model``, loaded from ``path`` without it, into the model."""
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(Path(path).parent))
    except Exception as exc:
        raise HyperonnxError(f"{path}: cannot read its external data ({short_reason(exc)})") from None


def load_lazy(path: str | os.PathLike) -> onnx.ModelProto:
    """Load a model without its external data; every external reference is checked now (a file inside the
    model's folder, offset and length within it), so a bad one is one clear error before any work is done."""
    model = load(path, load_external_data=False)
    folder = Path(path).parent
    for tensor in _all_tensors(model):
        if is_external(tensor):
            external_ref(tensor, folder, model_path=path)
    return model


# Free text that hyperonnx never reads, only carries over: its bytes pass through whatever they are (ONNX Runtime
# does not check them either).
_FREE_TEXT_FIELDS = {"doc_string", "metadata_props"}


def _repeated(field) -> bool:
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _non_utf8_strings(message, where: str) -> Iterator[str]:
    """Paths of the string fields that protobuf could not decode as UTF-8. ONNX's schema is proto2, so protobuf
    parses such a field and hands it over as bytes instead of str; every later step that treats names as text
    would then fail with an internal error, far from the cause (a fuzzer finding)."""
    for field, value in message.ListFields():
        repeated = _repeated(field)
        if field.name in _FREE_TEXT_FIELDS:
            continue
        if field.type == field.TYPE_STRING:
            for item in value if repeated else (value,):
                if isinstance(item, bytes):
                    yield f"{where}.{field.name}"
        elif field.type == field.TYPE_MESSAGE:
            if not repeated:
                yield from _non_utf8_strings(value, f"{where}.{field.name}")
            elif not field.message_type.GetOptions().map_entry:
                for index, item in enumerate(value):
                    yield from _non_utf8_strings(item, f"{where}.{field.name}[{index}]")


def external_files(model_path: str | os.PathLike, model: onnx.ModelProto | None = None) -> list[Path]:
    """External data files referenced by a saved model (for size accounting); ``model``: the model at
    ``model_path`` if it is already loaded (not read again)."""
    model_path = Path(model_path)
    if model is None:
        model = onnx.load(str(model_path), load_external_data=False)
    names = set()
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return [model_path.parent / name for name in sorted(names)]


def data_file(path: str | os.PathLike) -> Path:
    """Where :func:`save` puts a model's external data: ``OUT.data`` beside ``OUT``."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """One path, once symbolic links are followed. (A hard link to the input is another name: every output is
    written under a temporary name and renamed into place, which leaves the input's inode as it was.)"""
    return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting_input(source: str | os.PathLike, source_data: list[Path],
                             outputs: Iterable[str | os.PathLike]) -> None:
    """One HyperonnxError line, before any work, when an output would replace the input model or one of its
    external data files ``source_data`` (``-o model.onnx.data`` would have replaced the weights being read)."""
    inputs = [Path(source), *source_data]
    for output in outputs:
        for index, path in enumerate(inputs):
            if same_path(output, path):
                what = "the input model" if index == 0 else "the input's external data"
                raise HyperonnxError(f"{output}: writing it would overwrite {what} {path}; choose another output")


def file_size(model_path: str | os.PathLike, model: onnx.ModelProto | None = None) -> int:
    """Bytes on disk of a model, its external data included (``model``: as for :func:`external_files`)."""
    model_path = Path(model_path)
    total = model_path.stat().st_size
    for extra in external_files(model_path, model):
        if extra.exists():
            total += extra.stat().st_size
    return total


def output_folder(path: str | os.PathLike) -> Path:
    """The folder an output ``path`` goes to, checked to exist and be writable (one HyperonnxError line)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise HyperonnxError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise HyperonnxError(f"{path}: output folder {folder} is not writable")
    return folder


def save(model: onnx.ModelProto, path: str | os.PathLike, external_data: bool | None = None,
         source_dir: str | os.PathLike | None = None, spool: BlobSpool | None = None) -> None:
    """Write ``model`` to ``path`` atomically; external data (``<name>.data``) when asked or when needed.

    Files are written into a temporary folder beside the target and renamed into place, so an interrupted
    run never leaves a half-written model. ``model`` may be modified (tensor data moved out). Tensors of
    ``model`` that still refer to external data (a model from :func:`load_lazy`) are read from ``source_dir``
    (the input model's folder): copied in chunks into the output's data file, or read in when saving inline.
    Tensors that :meth:`BlobSpool.take` moved to ``spool`` are copied from it the same way: the files are the
    same bytes as when those tensors were in memory.
    """
    path = Path(path)
    folder = output_folder(path)
    if external_data is None:
        external_data = _inline_size_over_limit(model)
    final_data = data_file(path)
    data_name = final_data.name
    tmp = None
    placed_data = False  # final_data now holds this save's data (undone on any failure below)
    done = False
    try:
        with _interrupts_deferred():  # a Ctrl-C between creating the folder and noting it would leave it behind
            tmp = Path(tempfile.mkdtemp(prefix=".hyperonnx-", dir=folder))
            backup = tmp / (data_name + ".previous")
        target = tmp / path.name
        data = tmp / data_name
        if external_data:
            _write_external_data(model, data, data_name, source_dir, spool)
            if data.exists():
                os.chmod(data, 0o644)  # models are shared between users and containers
        else:
            _read_in_external_data(model, source_dir, spool)
            # an older external data file of another save (OUT.data) is left alone: the user's files
        onnx.save_model(model, str(target))
        os.chmod(target, 0o644)
        # Commit: the data first (the model names it), then the model. A previous OUT.data is kept (a second
        # link in our temporary folder) until the model is in place, so a failure between the two renames
        # restores it; OUT.data itself is only ever replaced atomically, never missing. A Ctrl-C waits for the
        # commit's end (the renames and the flags that say what to undo must agree).
        with _interrupts_deferred():
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
        with _interrupts_deferred():  # the clean-up runs to its end, then a Ctrl-C that came meanwhile is raised
            if tmp is not None:
                if not done:
                    if placed_data:
                        _unlink_quietly(final_data)
                    if backup.exists():
                        try:
                            os.replace(backup, final_data)
                        except OSError:
                            pass
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a SIGINT that arrives inside the block and raise it (KeyboardInterrupt) when the block ends; only in
    the main thread and when SIGINT has Python's default handler (nothing else to respect)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pending: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pending:
            raise KeyboardInterrupt


# ---- external data --------------------------------------------------------------------------------------

INLINE_THRESHOLD = 1024  # initializers with at least this many bytes (sys.getsizeof) go to the data file
COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class ExternalRef:
    """Where one tensor's bytes are: a plain value, safe to hand to another thread (protobuf messages are not)."""

    name: str
    folder: str
    location: str
    offset: int
    length: int

    @property
    def path(self) -> Path:
        return Path(self.folder) / self.location


def is_external(tensor: onnx.TensorProto) -> bool:
    return external_data_helper.uses_external_data(tensor)


def external_ref(tensor: onnx.TensorProto, folder: str | os.PathLike | None,
                 model_path: str | os.PathLike | None = None) -> ExternalRef:
    """Check where ``tensor``'s external data is (a regular file inside ``folder``, offset and length within
    it; no length: to the end of the file) and return it. Raises HyperonnxError."""
    where = model_path if model_path is not None else folder
    if folder is None:
        raise HyperonnxError(f"tensor {tensor.name!r} refers to external data, but the model's folder is unknown")
    try:
        info = external_data_helper.ExternalDataInfo(tensor)
        with _open_external(folder, info.location, tensor.name) as file:
            size = os.fstat(file.fileno()).st_size
    except HyperonnxError:
        raise
    except Exception as exc:  # onnx's ValidationError, ValueError, OSError
        raise HyperonnxError(f"{where}: cannot read its external data ({short_reason(exc)})") from None
    offset = info.offset or 0
    length = info.length if info.length is not None else size - offset
    if offset > size or length < 0 or offset + length > size:
        raise HyperonnxError(f"{where}: cannot read its external data (tensor {tensor.name!r}: offset {offset} "
                             f"and length {length} are past the end of {info.location}, {size} bytes)")
    return ExternalRef(tensor.name, str(folder), info.location, offset, length)


def read_array(ref: ExternalRef, data_type: int, dims: tuple[int, ...], scratch: bool = False) -> np.ndarray:
    """A float tensor's values read from its external data file, into one new array (no other copy); with
    ``scratch``, into this thread's scratch array for a tensor (:mod:`hyperonnx.workspace`: valid until the next
    tensor read this way)."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    count = 1
    for d in dims:
        count *= int(d)
    if count * dtype.itemsize != ref.length:
        raise HyperonnxError(f"{ref.path}: external data of tensor {ref.name!r} holds {ref.length} bytes, its shape "
                             f"{list(dims)} needs {count * dtype.itemsize}")
    little = dtype.newbyteorder("<")
    array = workspace.array("tensor", count, little) if scratch else np.empty(count, dtype=little)
    with _open_ref(ref) as file:
        file.seek(ref.offset)
        _read_exactly(file, memoryview(array).cast("B"), ref)
    if not array.dtype.isnative:
        array = array.astype(dtype)
    return array.reshape(dims)


def _read_exactly(file, buffer: memoryview, ref: ExternalRef) -> None:
    done = 0
    while done < len(buffer):
        try:
            n = file.readinto(buffer[done:])
        except OSError as exc:
            raise HyperonnxError(f"{ref.path}: cannot read external data ({exc.strerror or exc})") from None
        if not n:
            raise HyperonnxError(f"{ref.path}: external data of tensor {ref.name!r} ends early (the file changed "
                                 "while it was read)")
        done += n


def _open_ref(ref: ExternalRef, spool: BlobSpool | None = None):
    if spool is not None and ref.location == spool.location:
        return spool.reader()
    try:
        file = _open_external(ref.folder, ref.location, ref.name)
    except Exception as exc:
        raise HyperonnxError(f"{ref.path}: cannot read external data ({short_reason(exc)})") from None
    if os.fstat(file.fileno()).st_size < ref.offset + ref.length:
        file.close()
        raise HyperonnxError(f"{ref.path}: external data of tensor {ref.name!r} ends early (the file changed "
                             "while it was read)")
    return file


def _open_external(folder: str | os.PathLike, location: str, name: str):
    """Open an external data file for reading, with onnx's checks (relative, inside the folder, no symlink)."""
    opener = getattr(external_data_helper, "_open_external_data_fd", None)
    if opener is not None:
        return os.fdopen(opener(str(folder), location, name, True), "rb")
    # older onnx: the same rules, checked here
    if not location or os.path.isabs(location):
        raise ValueError(f"location {location!r} of tensor {name!r} is not a relative path")
    base = os.path.realpath(folder)
    full = os.path.join(folder, location)
    if os.path.islink(full) or os.path.commonpath([base, os.path.realpath(full)]) != base:
        raise ValueError(f"location {location!r} of tensor {name!r} points outside {folder}")
    return open(full, "rb")


def _set_external(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _write_external_data(model: onnx.ModelProto, data: Path, data_name: str,
                         source_dir: str | os.PathLike | None, spool: BlobSpool | None = None) -> None:
    """The data file of ``model`` (as ``onnx.save_model(save_as_external_data=True, size_threshold=1024)`` lays
    it out: initializers in order, one after the other, no gaps), streaming: tensors still in the input's
    external data are copied through in chunks; in-memory ones are written and dropped from memory."""
    out = None
    buffer = None
    try:
        for tensor, initializer in _tensors_for_saving(model):
            if is_external(tensor):
                ref = _where(tensor, source_dir, spool)
                if not initializer or sys.getsizeof(b"") + ref.length < INLINE_THRESHOLD:
                    _read_in(tensor, ref, spool)  # small, or a node attribute: inline, as a full load and save does
                    continue
                if out is None:
                    out = open(data, "wb")
                if buffer is None:
                    buffer = bytearray(COPY_CHUNK)
                offset = out.tell()
                _copy(ref, out, buffer, spool)
                _set_external(tensor, data_name, offset, ref.length)
            elif initializer and tensor.HasField("raw_data"):
                raw = tensor.raw_data
                if sys.getsizeof(raw) < INLINE_THRESHOLD:
                    continue
                if out is None:
                    out = open(data, "wb")
                offset = out.tell()
                out.write(raw)
                del raw
                tensor.ClearField("raw_data")
                _set_external(tensor, data_name, offset, out.tell() - offset)
    finally:
        if out is not None:
            out.close()


def _copy(ref: ExternalRef, out, buffer: bytearray, spool: BlobSpool | None = None) -> None:
    view = memoryview(buffer)
    with _open_ref(ref, spool) as file:
        left = ref.length - _copy_in_kernel(file, out, ref)
        file.seek(ref.offset + ref.length - left)
        while left:
            part = view[: min(left, len(view))]
            _read_exactly(file, part, ref)
            out.write(part)
            left -= len(part)


def _copy_in_kernel(file, out, ref: ExternalRef) -> int:
    """Copies what it can of the tensor's bytes from ``file`` to the end of ``out`` inside the kernel
    (copy_file_range: no pass through this process's memory; a file system that shares extents copies none) and
    returns how many; 0 where the call is missing or refused (another file system, a pipe): the caller copies the
    rest through its buffer. Saving a 1 B-weight conversion spent about a second copying its θ blobs from the
    spool through user space, after every encoding had finished (benchmarks/convert_rate.py)."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None or ref.length == 0:
        return 0
    out.flush()
    start = out.tell()
    done = 0
    try:
        while done < ref.length:
            n = copy_file_range(file.fileno(), out.fileno(), ref.length - done, ref.offset + done, start + done)
            if n == 0:
                raise HyperonnxError(f"{ref.path}: external data of tensor {ref.name!r} ends early (the file "
                                     "changed while it was read)")
            done += n
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise HyperonnxError(f"{ref.path}: cannot copy external data ({exc.strerror or exc})") from None
    out.seek(start + done)  # the buffered writer's own position: past what the kernel wrote
    return done


# copy_file_range's refusals that only mean "copy it yourself" (another file system, an unsupported file).
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF,
                   errno.ETXTBSY, errno.EPERM}


def _read_in_external_data(model: onnx.ModelProto, source_dir: str | os.PathLike | None,
                           spool: BlobSpool | None = None) -> None:
    """Saving inline: tensors still in the input's external data (or in ``spool``) are read into the model."""
    for tensor, _ in _tensors_for_saving(model):
        if is_external(tensor):
            _read_in(tensor, _where(tensor, source_dir, spool), spool)


def _where(tensor: onnx.TensorProto, source_dir: str | os.PathLike | None,
           spool: BlobSpool | None) -> ExternalRef:
    """Where an external tensor's bytes are: in ``spool``, or in the input's external data (checked)."""
    if spool is not None:
        ref = spool.ref(tensor)
        if ref is not None:
            return ref
    return external_ref(tensor, source_dir)


def _read_in(tensor: onnx.TensorProto, ref: ExternalRef, spool: BlobSpool | None = None) -> None:
    """Make a tensor in external data an in-memory one."""
    with _open_ref(ref, spool) as file:
        file.seek(ref.offset)
        try:
            raw = file.read(ref.length)
        except OSError as exc:
            raise HyperonnxError(f"{ref.path}: cannot read external data ({exc.strerror or exc})") from None
    if len(raw) != ref.length:
        raise HyperonnxError(f"{ref.path}: external data of tensor {ref.name!r} ends early (the file changed "
                             "while it was read)")
    tensor.raw_data = raw
    del raw
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]


class BlobSpool:
    """Where a conversion puts what it makes, as it makes it, until :func:`save` copies it into the output's data
    file: an anonymous temporary file in the output's folder (on Linux, O_TMPFILE: it has no name, so no crash,
    interrupt or kill can leave it behind, and it stays on the output's file system). Without it every θ blob
    stayed in memory until the save: about 0.7 GB a billion weights. Copying a blob once more costs little
    beside encoding it (benchmarks/convert_rate.py); writing blobs straight into the data file instead would need
    the final order of every initializer, which the rewrite settles only at its end (subgraphs, Constant nodes).

    :meth:`take` moves a tensor's bytes out and leaves an external reference to the spool in it (a location no
    input can have: it names this spool only); the model must then be saved with ``spool=`` this one. Use it as a
    context manager, or :meth:`close` it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        folder = output_folder(self.path)
        self.location = f"hyperonnx-spool:{uuid.uuid4().hex}"
        self.folder = str(folder)
        self.taken = 0  # tensors moved out
        self._size = 0
        try:
            self._file = tempfile.TemporaryFile(dir=folder, prefix=".hyperonnx-spool-")
        except OSError as exc:
            raise HyperonnxError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def take(self, tensor: onnx.TensorProto) -> onnx.TensorProto:
        """``tensor`` with its bytes moved to the spool, when :func:`save` would put them in the data file (an
        initializer's raw data of at least :data:`INLINE_THRESHOLD` bytes): a new message that refers to the
        spool, to be used in its place. A smaller one is returned as it is (it stays inline)."""
        if not tensor.HasField("raw_data"):
            return tensor
        raw = tensor.raw_data
        if sys.getsizeof(raw) < INLINE_THRESHOLD:
            return tensor
        try:
            self._file.seek(self._size)  # a reader shares the file position
            self._file.write(raw)
        except OSError as exc:
            raise HyperonnxError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        offset, self._size = self._size, self._size + len(raw)
        del raw
        # A new message, not the old one with its raw data cleared: protobuf's upb backend keeps a cleared field's
        # bytes in the message's arena until the message itself is freed (measured: RSS grew by the θ bytes).
        moved = _without_raw_data(tensor)
        _set_external(moved, self.location, offset, self._size - offset)
        self.taken += 1
        return moved

    def put(self, name: str, blob: np.ndarray) -> onnx.TensorProto:
        """What ``take(numpy_helper.from_array(blob, name))`` returns for a flat uint8 array (a θ blob), written
        from the array itself: no bytes object made of it, nor a protobuf copy of those bytes read back."""
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError("BlobSpool.put takes a flat uint8 array")
        if sys.getsizeof(b"") + blob.size < INLINE_THRESHOLD:  # stays inline, as take would leave it
            return numpy_helper.from_array(blob, name)
        try:
            self._file.seek(self._size)  # a reader shares the file position
            self._file.write(np.ascontiguousarray(blob).data)
        except OSError as exc:
            raise HyperonnxError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        offset, self._size = self._size, self._size + blob.size
        moved = onnx.TensorProto(name=name, data_type=onnx.TensorProto.UINT8, dims=[blob.size])
        _set_external(moved, self.location, offset, blob.size)
        self.taken += 1
        return moved

    def ref(self, tensor: onnx.TensorProto) -> ExternalRef | None:
        """Where a tensor that :meth:`take` moved is in the spool; None for any other tensor."""
        info = {entry.key: entry.value for entry in tensor.external_data}
        if info.get("location") != self.location:
            return None
        return ExternalRef(tensor.name, self.folder, self.location, int(info["offset"]), int(info["length"]))

    def reader(self):
        """A file object reading the spool (its own buffer; seek before reading)."""
        try:
            self._file.flush()
            return os.fdopen(os.dup(self._file.fileno()), "rb")
        except OSError as exc:
            raise HyperonnxError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> BlobSpool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _without_raw_data(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """A copy of ``tensor`` without its raw data (the raw data is not copied)."""
    head = onnx.TensorProto()
    for field, value in tensor.ListFields():
        if field.name == "raw_data":
            continue
        if _repeated(field):
            getattr(head, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(head, field.name).CopyFrom(value)
        else:
            setattr(head, field.name, value)
    return head


def _tensors_for_saving(model: onnx.ModelProto) -> Iterator[tuple[onnx.TensorProto, bool]]:
    """Every tensor, in onnx's order: initializers (subgraphs' included), then node attributes; with whether it
    is an initializer (only those go to the data file when in memory, as onnx does)."""
    for tensor in external_data_helper._get_initializer_tensors(model):
        yield tensor, True
    for tensor in external_data_helper._get_attribute_tensors(model):
        yield tensor, False


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    return external_data_helper._get_all_tensors(model)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _inline_size_over_limit(model: onnx.ModelProto) -> bool:
    """Whether the model saved inline would pass the protobuf limit (external data counted as it would be)."""
    # ByteSize itself fails past 2 GiB with some protobuf builds; count the tensors first.
    total = external = 0
    for tensor in _all_tensors(model):
        if is_external(tensor):
            length = next((e.value for e in tensor.external_data if e.key == "length"), None)
            external += int(length) if length and length.isdigit() else PROTOBUF_LIMIT + 1
        else:
            total += len(tensor.raw_data)
        if total + external > PROTOBUF_LIMIT:
            return True
    return model.ByteSize() + external > PROTOBUF_LIMIT
