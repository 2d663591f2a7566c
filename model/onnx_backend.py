"""ONNX Runtime backend: export a model directory to ONNX and run it.

:func:`export_onnx` writes ``model.onnx`` (fp32) and, optionally,
``model.int8.onnx`` (dynamically quantised int8 weights) next to the model's
files, plus ``onnx_export.json`` recording how they were made and how far their
outputs are from PyTorch's. ``Scorer.from_pretrained(dir, backend="onnx")``
loads them through :class:`OnnxRunner`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from zhenping.model.scorer import (
    CONFIG_FILE,
    PICKLE_WEIGHTS,
    SAFE_WEIGHTS,
    SCORER_CONFIG_FILE,
    ModelLoadError,
    _check_files,
    _load_model_config,
    _load_torch_model,
    _validate,
    pad_batch,
    read_json,
)

log = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_INFO_FILE = "onnx_export.json"
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Exported logits must match PyTorch's this closely (fp32, same arithmetic up to
# operator order); a larger gap means the trace went wrong and the file is not kept.
FP32_EXPORT_TOLERANCE = 1e-3


class OnnxRunner:
    """Forward pass with ONNX Runtime: padded ids and mask in, logits out."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", num_threads: int | None = None,
                 spinning: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        if not spinning:
            # Idle pool threads sleep instead of busy-waiting for the next run: a
            # server's event loop then gets the cores between forward passes.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError(
                    f"device {device!r} needs onnxruntime-gpu (CUDAExecutionProvider); "
                    f"available: {ort.get_available_providers()}"
                )
            providers.insert(0, "CUDAExecutionProvider")
        elif str(device) != "cpu":
            raise ValueError(f"the ONNX backend runs on 'cpu' or 'cuda[:N]', got device {device!r}")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own unexported exception types
            raise ModelLoadError(f"{self.path} is not a loadable ONNX model: {err}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in INPUT_NAMES[:2] if n not in self.input_names]
        if missing:
            raise ModelLoadError(
                f"{self.path} does not take the inputs a scorer feeds: missing {missing}, "
                f"it has {self.input_names}"
            )
        self.output_name = self.session.get_outputs()[0].name

    @classmethod
    def from_dir(
        cls,
        model_dir: str | os.PathLike,
        onnx_file: str | None = None,
        device: str = "cpu",
        num_threads: int | None = None,
        spinning: bool = True,
    ) -> "OnnxRunner":
        """Open the ONNX model of a model directory.

        Args:
            model_dir: the model directory.
            onnx_file: a file name in ``model_dir`` or a path; default: ``model.int8.onnx``
                if present, else ``model.onnx``.
            device: ``"cpu"``, or ``"cuda"`` with onnxruntime-gpu.
            num_threads: intra-op threads of the session (default: ONNX Runtime's).
            spinning: whether idle pool threads busy-wait for the next run (faster
                back-to-back batches; off in a server, where it takes CPU from the
                event loop).
        """
        model_dir = Path(model_dir)
        if onnx_file is not None:
            path = Path(onnx_file)
            if not path.is_absolute() and not path.exists():
                path = model_dir / onnx_file
            if not path.is_file():
                raise ModelLoadError(f"ONNX file {str(path)!r} does not exist")
        else:
            path = next((model_dir / f for f in (INT8_FILE, FP32_FILE) if (model_dir / f).is_file()), None)
            if path is None:
                raise ModelLoadError(
                    f"no ONNX model in {model_dir} (looked for {INT8_FILE}, {FP32_FILE}); "
                    f"write one with `zhenping export-onnx --model {model_dir}`"
                )
        _warn_if_stale(model_dir, path)
        return cls(path, device=device, num_threads=num_threads, spinning=spinning)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return self.session.run([self.output_name], feed)[0]


def export_onnx(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    quantize: bool = True,
    optimize: bool = False,
    opset: int = OPSET,
) -> dict:
    """Export a model directory's PyTorch model to ONNX.

    Args:
        model_dir: an exported model directory (``model.safetensors`` and configs).
        out_dir: where to write; default ``model_dir``. A different folder gets
            the model's configs, tokenizer and card too, so that
            ``Scorer.from_pretrained(out_dir, backend="onnx")`` loads it.
        quantize: also write ``model.int8.onnx`` (dynamic quantisation, int8 weights).
        optimize: apply ONNX Runtime's BERT fusions (``onnxruntime.transformers``:
            attention, embedding + layer norm, bias + GELU, skip + layer norm) to
            the fp32 graph before saving and quantising. Off by default: at the
            shipped size they measured no faster than the session's own graph
            optimisations (``benchmarks/bench_scorer.py``), and the fused graph
            uses ONNX Runtime-only operators.
        opset: ONNX opset.

    Returns:
        What was written: ``{"files": {name: {...}}, ...}``, as saved in ``onnx_export.json``.

    Raises:
        ModelLoadError: the model directory is incomplete or corrupt, or the
            exported graph does not reproduce PyTorch's logits.

    Example:
        >>> export_onnx("runs/export")["files"].keys()  # doctest: +SKIP
        dict_keys(['model.onnx', 'model.int8.onnx'])
    """
    import torch

    src = Path(model_dir).resolve()
    if not src.is_dir():
        raise ModelLoadError(f"model directory {str(src)!r} does not exist")
    _check_files(src, allow_pickle=False, need_weights=True)
    scorer_cfg = read_json(src / SCORER_CONFIG_FILE)
    config = _load_model_config(src, src / CONFIG_FILE)
    _validate(scorer_cfg, config, where=str(src))
    # Eager attention traces to plain MatMul/Softmax, which every runtime runs.
    model = _load_torch_model(src, config, allow_pickle=False, where=str(src), attn_implementation="eager")
    out = Path(out_dir).resolve() if out_dir is not None else src
    out.mkdir(parents=True, exist_ok=True)
    if out != src:
        _copy_model_files(src, out)

    # A padded example, so the traced graph keeps the attention-mask path.
    seq = min(8, int(scorer_cfg["max_length"]))
    ids = torch.full((2, seq), int(config.pad_token_id or 0), dtype=torch.long)
    ids[0, :] = 5
    ids[1, : seq // 2] = 5
    ids[:, 0] = 2
    mask = (torch.arange(seq)[None, :] < torch.tensor([[seq], [seq // 2]])).long()
    wrapper = _logits_only(model)

    info: dict = {"opset": opset, "source_weights_sha1": _weights_sha1(src), "files": {}}
    with tempfile.TemporaryDirectory(dir=out, prefix=".onnx-") as tmp:
        raw = Path(tmp) / FP32_FILE
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of one that needs
            # onnxscript; its trace of BERT is exact (checked below).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*aten::index.*")
            torch.onnx.export(
                wrapper,
                (ids, mask, torch.zeros_like(ids)),
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=["logits"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES},
                    "logits": {0: "batch"},
                },
                do_constant_folding=True,
            )
        fp32 = raw
        if optimize:
            fp32 = _optimize(raw, config)
        check = _check_batches(int(scorer_cfg["max_length"]), int(config.vocab_size), int(config.pad_token_id or 0))
        reference = [_torch_logits(model, i, m) for i, m in check]
        diff = _max_diff(OnnxRunner(fp32), check, reference)
        if diff > FP32_EXPORT_TOLERANCE:
            raise ModelLoadError(
                f"the exported ONNX graph of {src} differs from PyTorch by {diff:.2e} in logits "
                f"(tolerance {FP32_EXPORT_TOLERANCE}); not writing it"
            )
        _replace(fp32, out / FP32_FILE)
        info["files"][FP32_FILE] = {"optimized": optimize, "max_abs_logit_diff_vs_torch": diff}
        if quantize:
            q = Path(tmp) / INT8_FILE
            _quantize(out / FP32_FILE, q)
            qdiff = _max_diff(OnnxRunner(q), check, reference)
            _replace(q, out / INT8_FILE)
            info["files"][INT8_FILE] = {
                "optimized": optimize,
                "quantization": "dynamic, int8 weights (QInt8), uint8 activations",
                "max_abs_logit_diff_vs_torch": qdiff,
            }
        elif (out / INT8_FILE).exists():
            # An int8 file from an older export would shadow the new fp32 one.
            (out / INT8_FILE).unlink()
    info["versions"] = _versions()
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _logits_only(model):
    """Wrap a sequence classifier so the exported graph has one output, the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    # export() restores the wrapper's training flag afterwards, recursively:
    # a wrapper left in training mode would switch dropout on in the model.
    return LogitsOnly(model).eval()


def _check_batches(max_length: int, vocab_size: int, pad_id: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed random batches of mixed lengths (1 to max_length) for export checks."""
    rng = np.random.default_rng(0)
    batches = []
    for n, longest in ((1, 1), (3, min(7, max_length)), (4, max_length)):
        lengths = [longest] + list(rng.integers(1, longest + 1, size=n - 1))
        seqs = [list(rng.integers(5, max(6, vocab_size), size=k)) for k in lengths]
        batches.append(pad_batch(seqs, pad_id))
    return batches


def _torch_logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        t = torch.from_numpy(ids)
        return model(input_ids=t, attention_mask=torch.from_numpy(mask), token_type_ids=torch.zeros_like(t)).logits.numpy()


def _max_diff(runner: OnnxRunner, batches, reference) -> float:
    return max(float(np.abs(runner(i, m) - ref).max()) for (i, m), ref in zip(batches, reference))


def _optimize(path: Path, config) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(
        str(path),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
    )
    stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    log.info("ONNX Runtime fusions: %s", stats)
    out = path.with_name("model.opt.onnx")
    opt.save_model_to_file(str(out))
    return out


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Quiet the "consider pre-processing" advice the quantiser logs on every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            # Fused ops (from optimize=True) carry no inferred output types.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _replace(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _copy_model_files(src: Path, out: Path) -> None:
    skip = set(SAFE_WEIGHTS) | set(PICKLE_WEIGHTS) | {FP32_FILE, INT8_FILE, EXPORT_INFO_FILE}
    for f in src.iterdir():
        if f.is_file() and f.name not in skip and not f.name.startswith("."):
            shutil.copyfile(f, out / f.name)


def _weights_sha1(model_dir: Path) -> str | None:
    path = next((model_dir / f for f in SAFE_WEIGHTS if (model_dir / f).is_file()), None)
    if path is None:
        return None
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _warn_if_stale(model_dir: Path, onnx_path: Path) -> None:
    info_path = onnx_path.parent / EXPORT_INFO_FILE
    if not info_path.is_file():
        return
    try:
        recorded = json.loads(info_path.read_text(encoding="utf-8")).get("source_weights_sha1")
    except (OSError, json.JSONDecodeError, AttributeError):
        return
    current = _weights_sha1(model_dir)
    if recorded and current and recorded != current:
        log.warning(
            "%s was exported from different weights than %s holds now; re-run `zhenping export-onnx`",
            onnx_path,
            model_dir,
        )


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
