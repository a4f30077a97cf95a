"""Depth-Anything V2 run by OpenVINO on the CPU: an optional backend (`pip install "dav2-cli[openvino]"`).

Why it exists: on some CPUs OpenVINO's kernels beat torch's on this model by a wide margin (a 2-core Zen 4 with
AVX512-BF16 and no AMX: 7.67x upstream at its default bf16 against torch bf16's 2.57x), while on others torch
wins (an AMX Xeon: torch bf16 423 ms against OpenVINO's 452 ms). So it is one more candidate that engine.py
picks between by measuring (see `engine.time_backends`), and `--backend openvino` forces it.

How: dav2's own float32 model is traced once with `torch.jit.trace` and converted with `openvino.convert_model` into
one graph for every input size and batch size: the grid sizes stay traced values, and the position embedding
(resized per patch grid by the torch model, cached per grid) is the graph's second input. Measured on the Zen 4 of
README, the graph with dynamic sizes runs as fast as one converted for a single size (504x756: 720 vs 764 ms in
bf16, 1050 vs 1022 ms in f32, interleaved). It is compiled for the CPU with OpenVINO's INFERENCE_PRECISION_HINT: f32
for float32 (exact: ~2e-6 of the range off torch), bf16 for bfloat16 (its own default on CPUs with native bf16).
Converting costs ~2-3 s for vits on 2 cores, so the converted graph is saved in dav2's cache folder (the most
recently used, up to SAVED_BYTES, named by a hash of the weights, model code and versions) and later runs read it
instead; compiling reuses OpenVINO's own cache (CACHE_DIR) there.

The call contract is the torch model's (what `engine.predict_prepared` relies on): float32 (B,3,H,W)
ImageNet-normalised in, float32 (B,H,W) raw depth out, with `.config`, `.source`, `.precision`,
`.attention_form` and `.linear_form`. `openvino` is imported only here, and only when a model is converted.
"""

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from dav2_cli.errors import UsageError
from dav2_cli.runtime.interrupts import ctrl_c_held
from dav2_cli.model.dpt import check_image_batch
from dav2_cli.model.onednn_linear import release_packed_weights

INSTALL_HINT = 'pip install "dav2-cli[openvino]"'
PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}  # dav2's precision -> OpenVINO's inference precision
PRECISION_NAMES = {"f32": "float32", "bf16": "bfloat16"}
SAVED_BYTES = 4 << 30  # converted graphs kept on disk between runs, the most recently used first, the newest always
GRAPH_FORM = "any size, position embedding as input"  # in the saved graphs' hash: older forms are never read
# distinct input shapes one compiled model serves before it is compiled afresh from the saved graph (~0.5 s): OpenVINO
# keeps ~4 MB of state for each shape it has run (vits, measured), which a folder of photos in many sizes would
# otherwise grow without bound; dropping the compiled model frees it
SHAPES_PER_COMPILE = 16


def installed() -> bool:
    """Whether the optional package is there, without importing it (importing it takes about a second)."""
    return importlib.util.find_spec("openvino") is not None


def require_installed() -> None:
    if not installed():
        raise UsageError(f"--backend openvino needs OpenVINO, which is not installed: {INSTALL_HINT}")


def version() -> str:
    from importlib.metadata import version as package_version

    return package_version("openvino")


def _cache_dir() -> str:
    """openvino/ in dav2's cache folder, beside the timing caches (and moved with them, as the tests do)."""
    from dav2_cli.runtime import engine

    return str(engine.tuning_cache_path().parent / "openvino")


class OpenVINOModel(torch.nn.Module):
    """A float32 dav2 model run by OpenVINO, computing in `precision` (float32 or bfloat16).

    One converted graph serves every input size and batch size: the position embedding, the one part resized per
    patch grid outside the tensor graph, is computed by the torch model (cached per grid) and fed to the graph as
    a second input. The float32 torch model stays inside for that, and keeps the model's device and parameters
    visible to code written for torch models.
    """

    backend = "openvino"
    attention_form = linear_form = "openvino"  # OpenVINO fuses and lays out its own way: no form to choose

    def __init__(self, float32_model: torch.nn.Module, precision: str):
        super().__init__()
        if precision not in PRECISION_HINTS:
            raise UsageError(f"--dtype {precision} is not available with --backend openvino; use float32, "
                             f"bfloat16 or auto")
        if getattr(float32_model, "precision", "float32") != "float32":
            raise ValueError("OpenVINOModel converts a float32 model")
        self.float32_model = float32_model.eval()
        self.config = float32_model.config
        self.source = float32_model.source
        self.precision = precision
        self._compiled = None  # converted (or read from the cache folder) and compiled on the first call
        self._shapes = set()  # the input shapes the compiled model has run
        self._graph_name = None  # the saved graph's file name, hashed from the weights on first need
        self._unsaved = None  # the converted graph, kept here when the cache folder would not take it
        self.eval()  # as load_model promises, whichever backend it returns

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        check_image_batch(image_bchw, self.config.patch_size)
        patch = self.config.patch_size
        grid_hw = (image_bchw.shape[2] // patch, image_bchw.shape[3] // patch)
        position_1nc = self.float32_model.image_encoder.position_embedding(grid_hw, torch.float32)
        shape = tuple(image_bchw.shape)
        if shape not in self._shapes:
            if len(self._shapes) >= SHAPES_PER_COMPILE:
                self._compiled, self._shapes = None, set()
            self._shapes.add(shape)
        compiled = self.compiled()
        array = np.ascontiguousarray(image_bchw.detach().cpu().numpy(), dtype=np.float32)
        outputs = compiled([array, np.ascontiguousarray(position_1nc.cpu().numpy())])
        return torch.from_numpy(np.array(outputs[0], dtype=np.float32, copy=True))  # OpenVINO reuses its buffers

    def compiled(self):
        if self._compiled is None:
            # OpenVINO's converter calls back into Python, and its calls turn an interrupt into RuntimeError,
            # which the fallbacks below would take for a failure: Ctrl-C waits for the few seconds this takes
            with ctrl_c_held():
                self._compiled = self._convert()
        return self._compiled

    def _convert(self):
        import openvino

        core = openvino.Core()
        saved = self._saved_path()
        network = self._unsaved
        try:
            if network is None and saved.is_file():
                network = core.read_model(str(saved))
                os.utime(saved)  # most recently used: the last to be evicted
        except (RuntimeError, OSError):  # half-written by a crashed run, or removed meanwhile: convert again
            network = None
        if network is None:
            network = self._trace_and_convert()
            if not self._save(network, saved):
                self._unsaved = network  # so compiling afresh (SHAPES_PER_COMPILE) never converts again
        precision = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision]}
        try:
            compiled = core.compile_model(network, "CPU", {**precision, "CACHE_DIR": _cache_dir()})
        except RuntimeError:  # OpenVINO refuses a cache folder it cannot make or write: compile without one
            compiled = core.compile_model(network, "CPU", precision)
        # a CPU without bf16 kernels runs f32 whatever was asked: report what really runs
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = PRECISION_NAMES.get(actual, self.precision)
        return compiled

    def _saved_path(self) -> Path:
        """Where the converted graph is kept: named by a hash of everything it depends on (the weights, dav2's
        model code, torch and OpenVINO), so a stale one can never be read. The hash reads every weight (~0.1 s
        for vits), so it is taken once per model, not at each compile."""
        if self._graph_name is None:
            digest = hashlib.blake2b(digest_size=16)
            for name, tensor in self.float32_model.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().contiguous().cpu().numpy().view(np.uint8))
            for code in sorted(Path(__file__).with_name("model").glob("*.py")):
                digest.update(code.read_bytes())
            digest.update(f"torch {torch.__version__} openvino {version()} {GRAPH_FORM}".encode())
            self._graph_name = f"{digest.hexdigest()}.xml"
        return Path(_cache_dir()) / "models" / self._graph_name

    @staticmethod
    def _save(network, saved: Path) -> bool:
        """Best effort, and bounded in bytes: each graph holds its model's float32 weights (~100 MB for vits,
        ~1.3 GB for vitl), one graph per model. False when the graph could not be saved."""
        import openvino

        try:
            saved.parent.mkdir(parents=True, exist_ok=True)
            partial = saved.with_name(f"part-{os.getpid()}-{saved.name}")
            openvino.save_model(network, str(partial), compress_to_fp16=False)  # float32 stays exact
            os.replace(partial.with_suffix(".bin"), saved.with_suffix(".bin"))
            os.replace(partial, saved)
            kept = sorted(saved.parent.glob("*.xml"), key=lambda path: path.stat().st_mtime, reverse=True)
            total = 0
            for index, graph in enumerate(kept):
                total += sum(path.stat().st_size for path in (graph, graph.with_suffix(".bin")) if path.exists())
                if index > 0 and total > SAVED_BYTES:
                    graph.unlink(missing_ok=True)
                    graph.with_suffix(".bin").unlink(missing_ok=True)
        except (OSError, RuntimeError):
            return saved.is_file()
        return True

    def _trace_and_convert(self):
        import openvino

        patch, grid_hw = self.config.patch_size, (4, 6)  # a small even grid: the traced graph holds for every size
        # traced outside inference mode (tracing records autograd-free ops, but refuses inference tensors as
        # inputs); the trace is not re-run to check it
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the input checks' branches, fixed as intended
            example = (torch.zeros(1, 3, grid_hw[0] * patch, grid_hw[1] * patch),
                       self.float32_model.image_encoder.position_embedding(grid_hw, torch.float32).clone())
            traced = torch.jit.trace(self.float32_model, example, check_trace=False)
            return openvino.convert_model(traced, example_input=example, input=[
                openvino.PartialShape([-1, 3, -1, -1]), openvino.PartialShape([1, -1, self.config.width])])


class FastestBackend(torch.nn.Module):
    """`--backend auto` on a CPU with OpenVINO installed: for each input size, whichever of torch and OpenVINO
    `engine.fastest_backend` found faster on this machine (timed once, then read from the cache folder).

    torch's model is made by `make_torch_model` on first need (a size to time, or one where torch won), so a
    run that only ever uses OpenVINO holds no second copy of the weights.
    """

    backend = "auto"

    def __init__(self, openvino_model: OpenVINOModel, make_torch_model, precision: str):
        super().__init__()
        self.openvino_model = openvino_model
        self._make_torch_model = make_torch_model
        self._torch_model = None
        self.config = openvino_model.config
        self.source = openvino_model.source
        self.precision = precision
        self.chosen = {}  # (H, W) -> "torch" | "openvino"
        self.eval()

    @property
    def torch_model(self) -> torch.nn.Module:
        if self._torch_model is None:
            self._torch_model = self._make_torch_model()
        return self._torch_model

    def _release_torch_model(self) -> None:
        """Where OpenVINO won every size so far, torch's model only holds memory for the rest of the job: its bf16
        copy of the weights (~0.6 GB for vitl) and its packed Linear weights as much again. They are dropped, and
        made again should a later size have to be timed."""
        if self._torch_model is None:
            return
        release_packed_weights(self._torch_model)
        if self._torch_model is not self.openvino_model.float32_model:  # in float32, OpenVINO's own source
            self._torch_model = None

    @property
    def attention_form(self) -> str:
        """torch's form where torch runs; OpenVINO's own where only OpenVINO has run."""
        return self._torch_model.attention_form if self._torch_model is not None else "openvino"

    @property
    def linear_form(self) -> str:
        """As attention_form."""
        return self._torch_model.linear_form if self._torch_model is not None else "openvino"

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        from dav2_cli.runtime import engine

        size_hw = tuple(image_bchw.shape[2:])
        if size_hw not in self.chosen:
            name, depth_bhw = engine.fastest_backend(self, image_bchw)
            self.chosen[size_hw] = name
            if "torch" not in self.chosen.values():
                self._release_torch_model()
            if depth_bhw is not None:
                return depth_bhw  # the timing run's answer: no need to compute it again
        model = self.openvino_model if self.chosen[size_hw] == "openvino" else self.torch_model
        return model(image_bchw)
