"""Size buckets: one timing answers for every input of a bucket, so a first folder of photos in many aspect ratios
pays one timing, not one per size."""

import cv2
from click.testing import CliRunner

from dav2_cli.cli import main
from dav2_cli.runtime import device as devices
from dav2_cli.runtime import form_tuning, openvino_backend, size_buckets


def test_photos_of_common_aspect_ratios_at_one_input_size_share_one_bucket():
    """1:1 to 21:9, landscape and portrait, at --input-size 504: one timing serves them all."""
    sizes = [(504, 672), (504, 756), (504, 896), (672, 504), (756, 504), (504, 504), (504, 630), (504, 1120),
             (504, 1176), (1176, 504)]
    assert len({size_buckets.of_image(size, 14) for size in sizes}) == 1
    for other in ((252, 336), (1008, 1344), (1008, 1008)):  # half and twice the input size: timed apart
        assert size_buckets.of_image((504, 672), 14) != size_buckets.of_image(other, 14)
    assert size_buckets.of_image((504, 672), 14) == size_buckets.of_grid((36, 48))


def test_a_first_folder_in_many_aspect_ratios_times_torchs_forms_once(monkeypatch, fresh_cache, tmp_path,
                                                                      vits_checkpoint, make_photo):
    """The base install (torch alone) on a CPU with native bf16, where `--dtype auto` is bf16 and torch times its
    attention form: photos in four aspect ratios at one --input-size are one timing, not four."""
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"avx2": True, "avx512_f": True, "avx512_bf16": True,
                                                              "amx_bf16": True})
    monkeypatch.setattr(openvino_backend, "installed", lambda: False)
    timed = {"attention": [], "linear": []}

    def attention_timing(block, grid_hw):
        timed["attention"].append(grid_hw)
        return {"fused": 1.0, "matmul": 2.0}

    def linear_timing(block, grid_hw):
        timed["linear"].append(grid_hw)
        return {"plain": 1.0, "packed": 2.0}

    monkeypatch.setattr(form_tuning, "time_attention_forms", attention_timing)
    monkeypatch.setattr(form_tuning, "time_linear_forms", linear_timing)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, (height, width) in enumerate([(56, 84), (84, 56), (56, 56), (56, 126)]):
        cv2.imwrite(str(photos / f"p{index}.png"), make_photo(height, width, seed=index))
    result = CliRunner().invoke(main, ["folder", str(photos), "-o", str(tmp_path / "out"), "-m",
                                       str(vits_checkpoint), "--input-size", "56", "-q"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").iterdir())) == 4
    assert timed["attention"] == [(4, 6)]  # the first photo's grid; the other three read its answer
    assert len(timed["linear"]) <= 1  # timed where oneDNN's packed form can run, once
