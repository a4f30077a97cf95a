"""`--backend auto`: whichever installed backend is timed fastest for this model, precision and machine, timed only
where the work repays the timing.

Which backend is faster differs by CPU, as the attention form does: on a 2-core Zen 4 (AVX512-BF16, no AMX)
OpenVINO's bf16 ran 7.67x upstream against torch bf16's 2.57x, while on an AMX Xeon torch bf16 (423 ms) beat it
(452 ms). So auto times the candidates, once per model, precision and machine for each SIZE BUCKET (inputs within a
factor of ~2 in token count), on the first image of the bucket: torch's own forward of it (timed; a second one if
torch had not run yet, since a first call pays first-call costs), then each other candidate's, after a first call
if it has not run yet. The winner's depth is the image's, so every image's depth is one backend's, decided before
it is returned. The answer is kept in the tuning cache, keyed by the model's weights, head and code, the precision,
the bucket, the libraries' versions and the machine (tuning_cache.py).

Timing is not free: OpenVINO must first convert the model (4.7 s for vits on a 2-core AVX2 EPYC, ~3 of its forwards
at input size 504) or read and compile the converted graph (~0.5 s), and each candidate's timed forwards are spare
ones. Timed at once, a first `dav2 folder` of photos in ten sizes cost 2.21x the model's own forwards
(benchmarks/cold_folder.py, vits, 2-core AVX2 EPYC; 1.05x from a warm cache, and now 1.11x from a cold one). So a
bucket is timed only where that costs at most SETUP_SHARE of the work it joins: the seconds of model work this model
ran on this machine while a bucket waited (kept in the tuning cache, across runs) plus this job's (announced by
`plan`, or run). Until then the bucket runs torch, which needs no making, and nothing is stored for it: for the rest
of a job that announced its length, or, in a run of unknown length, until its own work repays the timing. The timing
says so on stderr, once, where stderr is a terminal or the job is verbose (`say_when_timing`), as progress is shown.
Ties go to torch.
"""

import copy
import math
import sys
import time

import torch

from dav2_cli.model.dpt import SkyFarForward
from dav2_cli.model.onednn_linear import release_packed_weights
from dav2_cli.runtime import backends, torch_backend, tuning_cache

TIMING_NOTE = "dav2: timing the backends once for this model and input size range (kept for later runs)…"
SETUP_SHARE = 0.1  # timing a bucket may cost at most this share of the work it joins
# what making a candidate costs, in torch forwards of this model at input size 504 (REFERENCE_SHAPE); measured for
# vits (2-core AVX2 EPYC, float32: converting 4.7 s, reading and compiling the converted graph 0.5 s, one forward
# 1.4 s); converting costs the larger models fewer of their own, slower forwards, so vits's figures bound them
SETUP_FORWARDS = {"convert": 4.0, "compile": 1.0, "ready": 0.0}
REFERENCE_SHAPE = (1, 3, 504, 504)


def size_bucket(size_hw: tuple[int, int], patch: int) -> str:
    """The bucket of an input size: its token count to the nearest power of 2, so the sizes one --input-size
    gives photos from 1:1 to 20:9 share a bucket or two (at 504: 1296 tokens for 1:1, 1620-2880 for 5:4-20:9)."""
    tokens = max(1, (size_hw[0] // patch) * (size_hw[1] // patch))
    return f"~{2 ** round(math.log2(tokens))} tokens"


def work_units(shape_bchw: tuple, patch: int, width: int) -> float:
    """A forward's work at this shape, up to a constant: per token, the Linear layers' 24·width² multiply-adds and
    attention's 4·width·tokens, so torch's time at one shape estimates its time at another."""
    tokens = (shape_bchw[2] // patch) * (shape_bchw[3] // patch)
    return shape_bchw[0] * tokens * (1 + tokens / (6 * width))


@torch.inference_mode()
def timed_depth(model: torch.nn.Module, image_bchw: torch.Tensor) -> tuple[torch.Tensor, float]:
    """`model`'s depth of `image_bchw` (its `signed_depth`, the graph's output) and the seconds it took."""
    began = time.perf_counter()
    depth_bhw = model.signed_depth(image_bchw)
    return depth_bhw, time.perf_counter() - began


@torch.inference_mode()
def time_backends(models: dict, image_bchw: torch.Tensor, warm: set) -> tuple[dict, dict]:
    """Seconds of one forward of each model on `image_bchw`, after one untimed first call for each not in `warm`
    (which they then join), and each one's depth.

    A first call pays OpenVINO's conversion or compiling, and torch's first-call allocations and form timings.
    """
    seconds, depths = {}, {}
    for name, model in models.items():
        if name not in warm:
            model.signed_depth(image_bchw)
            warm.add(name)
        depths[name], seconds[name] = timed_depth(model, image_bchw)
    return seconds, depths


def announce_timing() -> None:
    from tqdm import tqdm

    tqdm.write(TIMING_NOTE, file=sys.stderr)  # written around a progress bar, not through it
    sys.stderr.flush()


class FastestBackend(SkyFarForward, torch.nn.Module):
    """A model that runs, for each size bucket, whichever candidate backend was timed fastest on this machine
    (timed once where the work repays it, then read from the tuning cache).

    Each backend's model is built on first need (a bucket to time, or one where it won), so a run that only ever
    uses OpenVINO holds no second, torch copy of the weights in a reduced precision.
    """

    backend = "auto"

    def __init__(self, float32_model: torch.nn.Module, device: torch.device, precision: str, names):
        super().__init__()
        self.float32_model = float32_model  # every backend's source; torch's own model in float32
        self.device = device
        self.names = tuple(names)
        self.config = float32_model.config
        self.source = float32_model.source
        self.precision = precision
        self.chosen = {}  # size bucket -> backend name
        self.waiting = set()  # buckets that run torch in this run, untimed: the work did not repay timing them
        self.planned = 0  # images the job said it will run (`plan`)
        self.ran = 0.0  # seconds of model work in this run
        self.torch_rate = None  # torch's seconds per work unit, as last timed
        self._built = {}
        self._warm = set()  # backends that have run in this process: their next forward is a fair sample
        self._waited = None  # seconds of work earlier runs did while a bucket waited (from the tuning cache)
        self.waited_here = 0.0  # and this run, kept for later runs
        self._announced = False
        self.say_when_timing = sys.stderr.isatty()  # a job's --verbose sets it too
        self.eval()

    def plan(self, images: int | None) -> None:
        """The job will run about `images` images (None: unknown), whose work may repay timing the backends."""
        self.planned = max(0, images or 0)

    def model(self, name: str) -> torch.nn.Module:
        if name not in self._built:
            if name == "torch":
                self._built[name] = self.float32_model if self.precision == "float32" else \
                    torch_backend.prepare_model(copy.deepcopy(self.float32_model), self.device, self.precision)
            else:
                self._built[name] = backends.build(name, self.float32_model, self.device, self.precision)
        return self._built[name]

    def built(self, name: str) -> torch.nn.Module | None:
        return self._built.get(name)

    @property
    def openvino_model(self):
        return self.model("openvino")

    @property
    def torch_model(self):
        return self.model("torch")

    def _release_torch_model(self) -> None:
        """Where torch won no bucket so far, its model only holds memory for the rest of the job: its bf16 copy of
        the weights (~0.6 GB for vitl) and its packed Linear weights as much again. They are dropped, and made
        again should a later bucket have to be timed."""
        model = self._built.get("torch")
        if model is None or "torch" in self.chosen.values():
            return
        release_packed_weights(model)
        if model is not self.float32_model:  # in float32, the other backends' source: kept
            del self._built["torch"]
            self._warm.discard("torch")

    def _form(self, attribute: str) -> str:
        torch_model = self._built.get("torch")
        if torch_model is not None:
            return getattr(torch_model, attribute)
        return next((name for name in self.names if name in self._built), "torch")

    @property
    def attention_form(self) -> str:
        """torch's form where torch has run; else the other backend's own name."""
        return self._form("attention_form")

    @property
    def linear_form(self) -> str:
        return self._form("linear_form")

    def timing_key(self, bucket: str) -> str:
        return tuning_cache.cache_key("backend", model=tuning_cache.model_fingerprint(self.float32_model),
                                      precision=self.precision, bucket=bucket)

    def waiting_key(self) -> str:
        return tuning_cache.cache_key("waiting work", model=tuning_cache.model_fingerprint(self.float32_model),
                                      precision=self.precision)

    def waited(self) -> float:
        """Seconds of work earlier runs did while a bucket waited (this run's own are counted in `ran`)."""
        if self._waited is None:
            self._waited = tuning_cache.cached_number(self.waiting_key())
        return self._waited

    def _keep_waiting_work(self, seconds: float) -> None:
        self.waited_here += seconds
        tuning_cache.remember(self.waiting_key(), self.waited() + self.waited_here)

    def timing_cost(self, shape_bchw: tuple) -> float:
        """Seconds that timing the candidates at this shape would add to the work, in torch's time: making each
        (SETUP_FORWARDS), a spare forward of each, and a first call of each that has not run yet."""
        patch, width = self.config.patch_size, self.config.width
        forward = self.torch_rate * work_units(shape_bchw, patch, width)
        reference = self.torch_rate * work_units(REFERENCE_SHAPE, patch, width)
        cost = 0.0
        for name in self.names:
            if name != "torch":
                cost += SETUP_FORWARDS[self.model(name).setup_needed()] * reference + forward
            if name not in self._warm:
                cost += forward
        return cost

    def repays_timing(self, shape_bchw: tuple, *, earlier: bool = True) -> bool:
        """Whether the work at hand repays timing the candidates now (`timing_cost` within SETUP_SHARE of it): this
        job's, and where `earlier`, what earlier runs did while buckets waited."""
        job = max(self.planned * self.torch_rate * work_units(shape_bchw, self.config.patch_size, self.config.width),
                  self.ran)
        return self.timing_cost(shape_bchw) <= SETUP_SHARE * ((self.waited() if earlier else 0.0) + job)

    def _run(self, name: str, image_bchw: torch.Tensor, bucket: str) -> torch.Tensor:
        depth_bhw, seconds = timed_depth(self.model(name), image_bchw)
        self.ran += seconds
        if bucket in self.waiting:
            self._keep_waiting_work(seconds)
        return depth_bhw

    def _first_of_bucket(self, image_bchw: torch.Tensor, bucket: str) -> tuple[str, torch.Tensor]:
        """The bucket's backend and this image's depth by it: timed now where the work repays it, else torch's
        for the rest of this run, untimed."""
        shape = tuple(image_bchw.shape)
        torch_warm = "torch" in self._warm
        depth_bhw, seconds = timed_depth(self.torch_model, image_bchw)
        self.ran += seconds
        if torch_warm or self.torch_rate is None:  # a first call's rate only bounds the cost from above
            self.torch_rate = seconds / work_units(shape, self.config.patch_size, self.config.width)
        repays = self.repays_timing(shape)  # counting a second torch forward where this one was a first call
        self._warm.add("torch")
        if not repays:
            self.waiting.add(bucket)
            self._keep_waiting_work(seconds)
            return "torch", depth_bhw
        if self.say_when_timing and not self._announced:
            announce_timing()
            self._announced = True
        timed = {name: self.model(name) for name in self.names if name != "torch" or not torch_warm}
        seconds_by_name, depths = time_backends(timed, image_bchw, self._warm)
        if torch_warm:  # this image's own forward was a fair sample
            seconds_by_name["torch"], depths["torch"] = seconds, depth_bhw
        name = min(self.names, key=lambda candidate: seconds_by_name[candidate])  # torch first: ties go to it
        tuning_cache.remember(self.timing_key(bucket), name)
        return name, depths[name]

    def signed_depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        bucket = size_bucket(tuple(image_bchw.shape[2:]), self.config.patch_size)
        if bucket in self.waiting:
            # a bucket changes backend mid-run only here: where another run has timed it meanwhile (so that every
            # run agrees with the tuning cache), or in a run of unknown length (the API, a Ray actor) whose own
            # work has grown to repay the timing (earlier runs' work was counted at the bucket's first image)
            if tuning_cache.cached_answer(self.timing_key(bucket), self.names) is not None or (
                    not self.planned and self.repays_timing(tuple(image_bchw.shape), earlier=False)):
                self.waiting.discard(bucket)
                del self.chosen[bucket]
        if bucket not in self.chosen:
            name = tuning_cache.cached_answer(self.timing_key(bucket), self.names)
            if name is None:
                name, depth_bhw = self._first_of_bucket(image_bchw, bucket)
                self.chosen[bucket] = name
                self._release_torch_model()
                return depth_bhw
            self.chosen[bucket] = name
            self._release_torch_model()
        return self._run(self.chosen[bucket], image_bchw, bucket)
