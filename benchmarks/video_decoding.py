"""How fast a video is described and decoded to BGR frames: PyAV, OpenCV's bundled FFmpeg, and an ffmpeg pipe.

    python -m benchmarks.video_decoding [VIDEO] [--repeats 3]

Probing is what `dav2 video` does before the model loads; decoding is the first stage of its pipeline. Runs
are interleaved and the best of each is kept, so a machine shared with other work favours none of them.
"""

import argparse
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.data import DEFAULT_VIDEO


def probe_pyav(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, stream.average_rate, stream.frames


def probe_ffmpeg_listing(path):
    from dav2_cli.media.video_probe import find_ffmpeg

    argv = [find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0?", "-frames:v", "1",
            "-vf", "scale=2:2", "-pix_fmt", "gray", "-f", "yuv4mpegpipe", "pipe:1"]
    return len(subprocess.run(argv, capture_output=True).stderr)


def decode_pyav(path):
    import av

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            count += 1
    return count, image.shape


def decode_opencv(path):
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        count, shape = count + 1, image.shape
    capture.release()
    return count, shape


def decode_ffmpeg_pipe(path):
    from dav2_cli.media.video_probe import find_ffmpeg

    width, height = probe_pyav(path)[:2]
    process = subprocess.Popen([find_ffmpeg(), "-v", "error", "-nostdin", "-i", str(path), "-f", "rawvideo",
                                "-pix_fmt", "bgr24", "pipe:1"], stdout=subprocess.PIPE)
    size, count = width * height * 3, 0
    while chunk := process.stdout.read(size):
        image = np.frombuffer(chunk, np.uint8).reshape(height, width, 3)
        count += 1
    process.wait()
    return count, image.shape


def best_of(functions, path, repeats):
    best = {name: float("inf") for name in functions}
    results = {}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            results[name] = function(path)
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    probes, described = best_of({"pyav": probe_pyav, "ffmpeg listing": probe_ffmpeg_listing}, args.video,
                                args.repeats * 3)
    for name, seconds in probes.items():
        print(f"probe  {name:15s} {seconds * 1000:8.1f} ms   {described[name]}")
    decodes, decoded = best_of({"pyav": decode_pyav, "opencv": decode_opencv, "ffmpeg pipe": decode_ffmpeg_pipe},
                               args.video, args.repeats)
    for name, seconds in decodes.items():
        frames, shape = decoded[name]
        print(f"decode {name:15s} {seconds:8.3f} s   {frames / seconds:7.1f} frames/s   {frames} frames {shape}")


if __name__ == "__main__":
    main()
