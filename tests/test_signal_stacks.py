"""A signal after OpenVINO models were made and freed still stops the job cleanly (runtime/signal_stacks.py)."""

import ctypes
import subprocess
import sys
import threading

import pytest

from dav2_cli.runtime import signal_stacks

STACK_BYTES = 1 << 18  # far above any CPU's signal frame, AMX state included: the kernel refuses a stack too small


def in_a_thread(work):
    """`work()`'s result, run in a thread of its own: each thread has its own signal stack, and the test's main
    thread keeps pytest's."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=work()))
    thread.start()
    thread.join()
    return result["value"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is read through Linux's libc")
def test_a_signal_stack_a_call_swaps_is_given_back_when_it_returns():
    def swapped_inside():
        before = signal_stacks.current()
        other = ctypes.create_string_buffer(STACK_BYTES)
        with signal_stacks.kept():  # as OpenVINO's CPU plugin does when it compiles on an AMX CPU
            assert signal_stacks.install((ctypes.addressof(other), 0, STACK_BYTES))
            inside = signal_stacks.current()
        return before, inside, signal_stacks.current(), ctypes.addressof(other)

    before, inside, after, other = in_a_thread(swapped_inside)
    assert inside == (other, 0, STACK_BYTES) != before
    assert after == before


SIGNAL_AFTER_TWO_MODELS = """
import os, signal, sys, torch
import dav2_cli
x = torch.rand(1, 3, 56, 56)
first = dav2_cli.load_model(sys.argv[1], "cpu", "float32", backend="openvino")
later = dav2_cli.load_model(sys.argv[1], "cpu", "float32", backend="openvino")
with torch.inference_mode():
    first(x), later(x)  # each compiled, the first one first
del first  # freed in the order they were made
del later
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
print("stopped cleanly" if got == [signal.SIGTERM] else f"handler saw {got}")
"""


def test_a_signal_after_two_openvino_models_were_made_and_freed_reaches_its_handler(vits_checkpoint):
    """On an AMX CPU this died with SIGSEGV: the second model, freed, put back the first one's freed signal stack.
    It runs in a process of its own, as that crash would end the test session."""
    pytest.importorskip("openvino")
    result = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_TWO_MODELS, str(vits_checkpoint)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip() == "stopped cleanly"
