"""Depth-Anything V2 run by OpenVINO on the CPU: an optional backend (`pip install "dav2-cli[openvino]"`).

Why it exists: on some CPUs OpenVINO's kernels beat torch's on this model by a wide margin (a 2-core Zen 4 with
AVX512-BF16 and no AMX: 7.67x upstream at its default bf16 against torch bf16's 2.57x), while on others the two are
close (an AMX Xeon: torch bf16 423 ms against OpenVINO's 452 ms in one session, 359 against 280 ms in a later one).
So it is one more row of the backend table (backends.py) that `--backend auto` picks by measuring (auto_backend.py),
and `--backend openvino` forces it.

How: dav2's own float32 model is traced once with `torch.jit.trace` and converted with `openvino.convert_model` into
one graph for every input size and batch size: the grid sizes stay traced values, and the position embedding
(resized per patch grid by the torch model, cached per grid) is the graph's second input. Measured on the Zen 4
of docs/performance.md, the graph with dynamic sizes runs as fast as one converted for a single size (504x756:
720 vs 764 ms in bf16, 1050 vs 1022 ms in f32, interleaved). It is compiled for the CPU with OpenVINO's
INFERENCE_PRECISION_HINT: f32 for float32 (exact: ~2e-6 of the range off torch), bf16 for bfloat16 (its own
default on CPUs with native bf16).
Converting costs ~2-3 s for vits on 2 cores, so the converted graph is saved in dav2's cache folder, in a folder
named by the model's full cache key (weights, head kind, max_depth, model code, versions: tuning_cache.py), and
later runs read it instead; compiling reuses OpenVINO's own cache (CACHE_DIR) in the same folder, and the whole is
kept within a budget (openvino_cache.py).

The call contract is the torch model's (what `loading.predict_prepared` relies on): float32 (B,3,H,W)
ImageNet-normalised in, float32 (B,H,W) raw depth out (`signed_depth` the graph's own, with a sky-head model's sky
pixels negated; `forward` with them set far: model/head.py), with `.config`, `.source`, `.precision`,
`.attention_form` and `.linear_form`. `openvino` is imported only through `import_openvino`, and only when a model is
converted, exported or read.
"""

import contextlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from dav2_cli.errors import UsageError
from dav2_cli.model.dpt import SkyFarForward, check_image_batch
from dav2_cli.runtime import openvino_cache, signal_stacks, tuning_cache
from dav2_cli.runtime.interrupts import ctrl_c_held

INSTALL_HINT = 'pip install "dav2-cli[openvino]"'
PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}  # dav2's precision -> OpenVINO's inference precision
PRECISION_NAMES = {"f32": "float32", "bf16": "bfloat16"}
PRECISIONS = tuple(PRECISION_HINTS)
# in the saved graphs' hash: older forms are never read
GRAPH_FORM = "any size, position embedding as input, sky negated"
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
    return tuning_cache.library_version("openvino")


class OpenVINOModel(SkyFarForward, torch.nn.Module):
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
        if precision not in PRECISIONS:
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
        self._graph_key = None  # the saved graph's cache key, from a hash of the weights taken on first need
        self._unsaved = None  # the converted graph, kept here when the cache folder would not take it
        self.eval()  # as load_model promises, whichever backend it returns

    def signed_depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        """The graph's output: the model's `signed_depth`, with its sky pixels (if any) negated."""
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
        openvino = import_openvino()

        core = openvino.Core()
        entry = self._saved_folder()
        saved = entry / "graph.xml"
        network = self._unsaved
        try:
            if network is None and saved.is_file():
                network = core.read_model(str(saved))
        except (RuntimeError, OSError):  # half-written by a crashed run, or removed meanwhile: convert again
            network = None
        if network is None:
            network = self._trace_and_convert()
            if not self._save(network, saved):
                self._unsaved = network  # so compiling afresh (SHAPES_PER_COMPILE) never converts again
        precision = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision]}
        try:
            # a folder per precision: with one for both, on an AMX Xeon (OpenVINO 2026.4) a process that had
            # compiled float32 twice (writing, then reading its blob) got bf16 depth 27% of the range off
            compiled = compile_for_cpu(core, network, {**precision,
                                                       "CACHE_DIR": str(entry / "compiled" / self.precision)})
        except RuntimeError:  # OpenVINO refuses a cache folder it cannot make or write: compile without one
            compiled = compile_for_cpu(core, network, precision)
        openvino_cache.mark_used(entry)  # most recently used: the last to be evicted
        openvino_cache.keep_within_budget(keep=entry)
        # a CPU without bf16 kernels runs f32 whatever was asked: report what really runs
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = PRECISION_NAMES.get(actual, self.precision)
        return compiled

    def _saved_folder(self) -> Path:
        """Where this model's graph and compiled blobs are kept: named by its full cache key, so another model's
        (other weights, another head or max_depth, other code or versions) can never be read."""
        if self._graph_key is None:
            self._graph_key = tuning_cache.cache_key(
                "openvino graph", model=tuning_cache.model_fingerprint(self.float32_model), form=GRAPH_FORM)
        return openvino_cache.model_folder(self._graph_key)

    @staticmethod
    def _save(network, saved: Path) -> bool:
        """Best effort: False when the graph could not be saved (the budget is kept once it is compiled)."""
        openvino = import_openvino()

        partial = saved.with_name(f"part-{os.getpid()}-{saved.name}")
        try:
            saved.parent.mkdir(parents=True, exist_ok=True)
            openvino.save_model(network, str(partial), compress_to_fp16=False)  # float32 stays exact
            os.replace(partial.with_suffix(".bin"), saved.with_suffix(".bin"))
            os.replace(partial, saved)
        except (OSError, RuntimeError):
            openvino_cache.remove_partial(partial)
            return saved.is_file()
        return True

    def _trace_and_convert(self):
        openvino = import_openvino()

        patch, grid_hw = self.config.patch_size, (4, 6)  # a small even grid: the traced graph holds for every size
        # traced outside inference mode (tracing records autograd-free ops, but refuses inference tensors as
        # inputs); the trace is not re-run to check it
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the input checks' branches, fixed as intended
            example = (torch.zeros(1, 3, grid_hw[0] * patch, grid_hw[1] * patch),
                       self.float32_model.image_encoder.position_embedding(grid_hw, torch.float32).clone())
            traced = torch.jit.trace(_SignedGraph(self.float32_model), example, check_trace=False)
            return convert(traced, example_input=example, input=[
                openvino.PartialShape([-1, 3, -1, -1]), openvino.PartialShape([1, -1, self.config.width])])


@contextlib.contextmanager
def telemetry_off():
    """OpenVINO, where the openvino-telemetry package is installed (openvino depends on it), reports its import
    and each conversion to Google Analytics from a process it forks in a background thread. dav2
    reports nothing about its use, and that fork, taken while another thread holds the C library's resolver lock,
    left a child waiting forever, which the process then waited for at exit (seen once, at the end of a test
    session). The package's Telemetry class, which the converter looks up at each use, is an inert one meanwhile."""
    try:
        import openvino_telemetry
    except ImportError:  # nothing to turn off
        yield
        return
    reporting = openvino_telemetry.Telemetry
    openvino_telemetry.Telemetry = _NoTelemetry
    try:
        yield
    finally:
        openvino_telemetry.Telemetry = reporting


def import_openvino():
    """The openvino module, imported with its telemetry off: importing it reports itself (telemetry_off)."""
    with telemetry_off():
        import openvino
    return openvino


def convert(source, **options):
    """openvino.convert_model, reporting nothing (telemetry_off): every conversion dav2 makes goes through here."""
    with telemetry_off():
        return import_openvino().convert_model(source, **options)


def compile_for_cpu(core, network, config: dict):
    """core.compile_model on the CPU, the thread's signal stack kept as it was (signal_stacks.py): every compile
    dav2 makes goes through here."""
    with signal_stacks.kept():
        return core.compile_model(network, "CPU", config)


class _NoTelemetry:
    """openvino_telemetry.Telemetry's methods, doing nothing (what the converter's own stand-in offers)."""

    def __init__(self, *args, **kwargs):
        pass

    def _nothing(self, *args, **kwargs):
        return None

    init = send_event = send_error = send_stack_trace = start_session = end_session = force_shutdown = _nothing


class _SignedGraph(torch.nn.Module):
    """The graph converted: the model's `signed_depth` (sky decided inside it), not its sky-far `forward`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image_bchw: torch.Tensor, position_1nc: torch.Tensor) -> torch.Tensor:
        return self.model.signed_depth(image_bchw, position_1nc)
