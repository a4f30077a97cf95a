"""Every format dav2 writes says what it holds, and `dav2 info` reads it back, depth at a pixel included."""

import io
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dav2_cli.outputs import exr, formats, metadata, pictures, render, tiff, webp
from dav2_cli.outputs.ply import CloudRequest
from dav2_cli.cli import main
from dav2_cli.depth.camera import resolve_intrinsics
from dav2_cli.depth.point_cloud import CloudOptions

HEIGHT, WIDTH = 24, 32
AT = (7, 5)  # x, y

# the keys the gray16 video's sidecar has that a single picture has too
GRAY16_SIDECAR_KEYS = {"source", "model", "input_size", "kind", "larger", "unit", "lo", "hi", "decode"}


def depth_map(metric):
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    values = 2.0 + 0.05 * u + 0.03 * v  # smooth: every point survives the edge filter
    return (values if metric else 1.0 / values).astype(np.float32)


def description(metric, intrinsics=None):
    return metadata.describe(model="depth_anything_v2_vits.pth", metric=metric, input_size=56, width=WIDTH,
                             height=HEIGHT, source="photo.jpg", max_depth=20.0 if metric else None,
                             intrinsics=intrinsics)


def write(tmp_path, name, fmt, depth, metric, **options):
    outputs = render.encode_outputs(depth, fmt, ext=name[name.rindex("."):], metric=metric,
                                    description=description(metric, options.pop("intrinsics", None)), **options)
    for suffix, data in outputs:
        (tmp_path / f"{name}{suffix}").write_bytes(data)
    return tmp_path / name, dict(outputs)


def info(*args):
    result = CliRunner().invoke(main, ["info", *map(str, args)])
    return result.exit_code, result.output


def value_at(output):
    return float(re.search(r"depth at \(7, 5\): ([-\d.e+]+)", output)[1])


def png_text_chunks(png):
    """tEXt chunks by a walk over the PNG chunk layout, independent of dav2's reader."""
    found, position = {}, 8
    while position < len(png):
        length, kind = struct.unpack_from(">I4s", png, position)
        if kind == b"tEXt":
            key, value = png[position + 8:position + 8 + length].split(b"\0", 1)
            found[key.decode()] = value.decode("latin-1")
        position += 12 + length
    return found


@pytest.mark.parametrize("metric", [False, True])
@pytest.mark.parametrize("fmt, name, tolerance", [
    ("gray16", "d.png", 1 / 65535), ("gray", "d.png", 1 / 255), ("color", "d.png", 1 / 255),
    ("color", "d.jpg", 0.05), ("color", "d.webp", 1 / 255), ("gray", "d.webp", 1 / 255), ("npy", "d.npy", 0),
    ("exr", "d.exr", 0), ("tiff", "d.tiff", 0),
])
def test_metadata_and_depth_round_trip(tmp_path, fmt, name, tolerance, metric):
    depth = depth_map(metric)
    path, outputs = write(tmp_path, name, fmt, depth, metric)
    code, output = info(path, "--at", "7,5")
    assert code == 0, output
    assert "model: depth_anything_v2_vits.pth" in output and "input_size: 56" in output
    assert f"kind: {'metric' if metric else 'relative'}" in output
    assert f"unit: {'meters' if metric else metadata.RELATIVE_UNIT}" in output
    assert f"larger: {'farther' if metric else 'nearer'}" in output
    span = float(depth.max() - depth.min())
    assert value_at(output) == pytest.approx(float(depth[5, 7]), abs=tolerance * span + 1e-6)
    if fmt in formats.VISUAL_FORMATS:
        assert re.search(r"^  lo: ", output, re.M) and re.search(r"^  hi: ", output, re.M)


def test_gray16_png_holds_lo_hi_in_text_chunks_and_its_sidecar(tmp_path):
    depth = depth_map(metric=True)
    path, outputs = write(tmp_path, "d.png", "gray16", depth, True)
    chunks = png_text_chunks(path.read_bytes())
    assert float(chunks["lo"]) == float(depth.min()) and float(chunks["hi"]) == float(depth.max())
    assert chunks["larger"] == "farther" and chunks["brighter"] == "nearer"
    sidecar = json.loads((tmp_path / "d.png.json").read_text())
    assert GRAY16_SIDECAR_KEYS <= set(sidecar)
    assert (sidecar["lo"], sidecar["hi"]) == (float(depth.min()), float(depth.max()))
    # the picture itself is unchanged by its metadata: OpenCV decodes the same 16-bit levels
    levels = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(levels, pictures.to_visual(depth, "gray16", metric=True))


def test_tiff_and_exr_keep_their_values_with_a_description(tmp_path):
    depth = depth_map(metric=True)
    path, _ = write(tmp_path, "d.tiff", "tiff", depth, True)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), depth)
    assert tiff.read_description(path.read_bytes())["unit"] == "meters"
    from tests.test_render import read_exr  # the OpenEXR library's reader

    path, _ = write(tmp_path, "d.exr", "exr", depth, True)
    pixels, header = read_exr(path.read_bytes())
    np.testing.assert_array_equal(pixels, depth)
    assert header["larger"] == "farther" == exr.read_description(path.read_bytes())["larger"]


def pillow_description(data):
    """The description as Pillow finds it in each container: PNG text chunks, the JPEG comment, the WebP XMP
    packet (parsed as XML) and the TIFF ImageDescription tag."""
    picture = Image.open(io.BytesIO(data))
    if picture.format == "PNG":
        return {key: metadata.from_text(text) for key, text in picture.text.items()}
    if picture.format == "JPEG":
        return json.loads(picture.info["comment"])
    if picture.format == "WEBP":
        namespaces = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
        packet = ElementTree.fromstring(picture.info["xmp"].split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0])
        return json.loads(packet.find(".//dc:description/rdf:Alt/rdf:li", namespaces).text)
    assert picture.format == "TIFF" and picture.mode == "F"
    return json.loads(picture.tag_v2[270])


def test_jpeg_description_after_fill_bytes(tmp_path):
    path, outputs = write(tmp_path, "d.jpg", "color", depth_map(False), False)
    path.write_bytes(outputs[""][:2] + b"\xff\xff" + outputs[""][2:])  # fill bytes may precede any marker
    assert pillow_description(path.read_bytes())["kind"] == "relative"
    code, output = info(path)
    assert code == 0 and "  kind: relative" in output


@pytest.mark.parametrize("name,fmt", [("d.png", "color"), ("d.png", "gray16"), ("d.jpg", "color"),
                                      ("d.webp", "gray"), ("d.tiff", "tiff")])
@pytest.mark.parametrize("metric", [False, True])
def test_pillow_reads_the_description_dav2_info_reads(tmp_path, name, fmt, metric):
    source = {"source": "tiefe <&> \"Straße\" 深度.jpg"}  # markup and a script beyond Latin-1
    path, outputs = write(tmp_path, name, fmt, depth_map(metric), metric, intrinsics=None)
    found = pillow_description(outputs[""])
    assert found["unit"] == ("meters" if metric else metadata.RELATIVE_UNIT) and found["width"] == WIDTH
    code, output = info(path)
    assert code == 0 and f"  larger: {found['larger']}" in output and f"  model: {found['model']}" in output
    awkward = render.encode(depth_map(metric), fmt, ext=path.suffix, metric=metric,
                            description={**description(metric), **source})
    assert pillow_description(awkward)["source"] == source["source"]


def test_side_by_side_picture_reads_the_depth_half(tmp_path):
    depth = depth_map(metric=False)
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    path, _ = write(tmp_path, "d.png", "gray16", depth, False, image_bgr=image)
    code, output = info(path, "--at", "7,5")
    assert code == 0 and "layout: side by side" in output
    assert value_at(output) == pytest.approx(float(depth[5, 7]), abs=float(depth.max() - depth.min()) / 65535)


def test_ply_header_and_depth_at_a_pixel(tmp_path):
    depth = depth_map(metric=True)
    intrinsics = resolve_intrinsics(WIDTH, HEIGHT, hfov=60)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for y_up in (False, True):
        request = CloudRequest(intrinsics, image, CloudOptions(y_up=y_up), 20.0)
        path, _ = write(tmp_path, f"d{y_up}.ply", "ply", depth, True, cloud=request, intrinsics=intrinsics)
        code, output = info(path, "--at", "7,5")
        assert code == 0, output
        assert f"PLY point cloud, {HEIGHT * WIDTH} points" in output and "intrinsics.fx:" in output
        assert value_at(output) == pytest.approx(float(depth[5, 7]), rel=1e-6)


def test_gray16_video_sidecar(tmp_path):
    video = tmp_path / "d.mkv"
    video.write_bytes(b"\x1a\x45\xdf\xa3 not really a video")
    video_sidecar = {"source": "clip.mp4", "model": "vits", "input_size": 504, "kind": "relative",
                     "larger": "nearer", "unit": metadata.RELATIVE_UNIT, "fps": "30/1", "frames": 3, "lo": 0.5,
                     "hi": 2.5, "decode": "depth = lo + v / 65535 * (hi - lo)"}
    (tmp_path / "d.mkv.json").write_text(json.dumps(video_sidecar))
    code, output = info(video)
    assert code == 0 and "lo: 0.5" in output and "fps: 30/1" in output
    code, output = info(video, "--at", "1,1")
    assert code == 2 and "has no pixels" in output


def test_mistakes_are_one_line_with_the_documented_code(tmp_path):
    path, _ = write(tmp_path, "d.npy", "npy", depth_map(False), False)
    code, output = info(path, "--at", f"{WIDTH},0")
    assert code == 2 and output.count("\n") == 1 and "outside the 32x24 depth map" in output
    code, output = info(path, "--at", "seven,5")
    assert code == 2
    (tmp_path / "plain.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    code, output = info(tmp_path / "plain.png")
    assert code == 1 and "without a dav2 description" in output
    code, output = info(tmp_path / "missing.png")
    assert code == 1 and output.startswith("dav2: error:")


def riff_chunks(webp):
    """(fourcc, payload) by a walk over the RIFF layout, independent of dav2's reader."""
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP" and struct.unpack_from("<I", webp, 4)[0] == len(webp) - 8
    found, position = [], 12
    while position < len(webp):
        kind, length = struct.unpack_from("<4sI", webp, position)
        found.append((kind, webp[position + 8:position + 8 + length]))
        position += 8 + length + (length & 1)
    assert position == len(webp)
    return found


def test_webp_carries_its_description_in_a_standard_xmp_packet(tmp_path):
    depth = depth_map(False)
    path, outputs = write(tmp_path, "d.webp", "color", depth, False, intrinsics=None)
    chunks = riff_chunks(outputs[""])
    assert [kind for kind, _ in chunks] == [b"VP8X", b"VP8L", b"XMP "]  # lossless, extended to hold XMP
    flags, width, height = chunks[0][1][0], *(int.from_bytes(chunks[0][1][at:at + 3], "little") + 1
                                               for at in (4, 7))
    assert flags == 0x04 and (width, height) == (WIDTH, HEIGHT)
    packet = chunks[2][1].decode()
    root = ElementTree.fromstring(packet[packet.index("<x:xmpmeta"):packet.index("<?xpacket end")])
    item = root.find(".//{http://purl.org/dc/elements/1.1/}description//{http://www.w3.org/1999/02/22-rdf-syntax-"
                     "ns#}li")
    assert json.loads(item.text)["model"] == "depth_anything_v2_vits.pth"
    picture = cv2.imdecode(np.frombuffer(outputs[""], np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(picture, pictures.to_visual(depth, "color"))  # the pixels are untouched


def test_webp_description_survives_markup_and_other_scripts(tmp_path):
    awkward = {"source": "tiefe <&> \"Straße\" 深度.jpg", "lo": 0.5}
    picture = cv2.imencode(".webp", np.zeros((4, 6, 3), np.uint8))[1].tobytes()
    assert webp.read_description(webp.with_description(picture, awkward, 6, 4)) == awkward
    again = webp.with_description(webp.with_description(picture, {"lo": 1}, 6, 4), awkward, 6, 4)
    assert [kind for kind, _ in riff_chunks(again)].count(b"XMP ") == 1  # replaced, not stacked
    assert webp.read_description(again) == awkward and webp.read_description(picture) == {}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's always-full device")
def test_a_full_stdout_is_one_line_not_a_traceback(tmp_path):
    path, _ = write(tmp_path, "d.png", "gray16", depth_map(False), False)
    with open("/dev/full", "wb") as full:
        result = subprocess.run([sys.executable, "-m", "dav2_cli", "info", str(path)], stdout=full,
                                stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["dav2: error: output: no space left on device"]
