"""`--backend auto`: whichever installed backend is timed fastest for this model, precision and machine.

Which backend is faster differs by CPU, as the attention form does: on a 2-core Zen 4 (AVX512-BF16, no AMX)
OpenVINO's bf16 ran 7.67x upstream against torch bf16's 2.57x, while on an AMX Xeon torch bf16 (423 ms) beat it (452
ms) in one session and lost (359 against 280 ms) in a later one. So auto times the candidates, but once per model,
precision and machine for each size bucket (size_buckets.py), not at each input size: a folder of photos in ten
sizes at one --input-size falls in one bucket, where timing at every size paid ten timing runs (1.47x the model's
own time per image from a cold cache); `dav2 models prepare` (jobs/prepare.py) pays the timing ahead of a first
short job. The answer is kept in the tuning cache, keyed by the model's weights, head and code, the precision,
the bucket, the libraries' versions and the machine (tuning_cache.py). The first timing says so on stderr, once,
where stderr is a terminal or the job is verbose (`say_when_timing`), as progress is shown: a script reading
stderr gets no line it did not ask for. Ties go to torch, which starts at once.
"""

import copy
import sys
import time

import torch

from dav2_cli.model.dpt import SkyFarForward
from dav2_cli.model.onednn_linear import release_packed_weights
from dav2_cli.runtime import backends, size_buckets, torch_backend, tuning_cache

TIMING_NOTE = ("dav2: timing the backends once for this model and input size range (kept for later runs; "
               "`dav2 models prepare` does it ahead)…")


@torch.inference_mode()
def time_backends(models: dict, image_bchw: torch.Tensor) -> tuple[dict, dict]:
    """Seconds of one forward of each model on `image_bchw` after one untimed warm-up each, and each one's depth
    (its `signed_depth`, the graph's output).

    The warm-up pays OpenVINO's one conversion of the model if no earlier run has, its first call at this shape,
    and torch's first-call allocations; the timed forwards add one forward of each.
    """
    depths = {name: model.signed_depth(image_bchw) for name, model in models.items()}
    seconds = {}
    for name, model in models.items():
        began = time.perf_counter()
        model.signed_depth(image_bchw)
        seconds[name] = time.perf_counter() - began
    return seconds, depths


def announce_timing() -> None:
    from tqdm import tqdm

    tqdm.write(TIMING_NOTE, file=sys.stderr)  # written around a progress bar, not through it
    sys.stderr.flush()


class FastestBackend(SkyFarForward, torch.nn.Module):
    """A model that runs, for each size bucket, whichever candidate backend was timed fastest on this machine
    (timed once, then read from the tuning cache).

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
        self._built = {}
        self._announced = False
        self.say_when_timing = sys.stderr.isatty()  # a job's --verbose sets it too
        self.eval()

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
        if model is None:
            return
        release_packed_weights(model)
        if model is not self.float32_model:  # in float32, the other backends' source: kept
            del self._built["torch"]

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

    def _choose(self, image_bchw: torch.Tensor, bucket: str):
        """The bucket's backend, from the cache or timed now, and the depth of `image_bchw` if timing made it.

        Timed on the batch's first image alone: a folder batches photos of one size, and timing a batch of four
        made each of the spare forwards four."""
        key = self.timing_key(bucket)
        name = tuning_cache.cached_answer(key, self.names)
        if name is not None:
            return name, None
        if self.say_when_timing and not self._announced:
            announce_timing()
            self._announced = True
        seconds, depths = time_backends({name: self.model(name) for name in self.names}, image_bchw[:1])
        name = min(self.names, key=lambda candidate: seconds[candidate])  # torch first: ties go to it
        tuning_cache.remember(key, name)
        return name, depths[name] if image_bchw.shape[0] == 1 else None

    def signed_depth(self, image_bchw: torch.Tensor) -> torch.Tensor:
        bucket = size_buckets.of_image(tuple(image_bchw.shape[2:]), self.config.patch_size)
        if bucket not in self.chosen:
            name, depth_bhw = self._choose(image_bchw, bucket)
            self.chosen[bucket] = name
            if "torch" not in self.chosen.values():
                self._release_torch_model()
            if depth_bhw is not None:
                return depth_bhw  # the timing run's answer: no need to compute it again
        return self.model(self.chosen[bucket]).signed_depth(image_bchw)
