"""facenet-pytorch's MTCNN on the benchmark frames: prints {"fps": …, "faces": […]} as JSON.

    python reference_mtcnn.py N FRAME.png [FRAME.png …]

Runs two warm-up passes, then detects on N frames (cycling through the files given) and
reports frames per second. Thresholds and pyramid are facenet-pytorch's defaults, the ones
sd2facedetect uses; torch uses every core, as sd2facedetect does.
"""

import json
import sys
import time

import numpy as np
import torch
from PIL import Image
from facenet_pytorch import MTCNN


def main():
    n = int(sys.argv[1])
    frames = [np.array(Image.open(p).convert("RGB")) for p in sys.argv[2:]]
    mtcnn = MTCNN(keep_all=True, device="cpu")
    with torch.no_grad():
        for f in frames * 2:
            mtcnn.detect(f)
        faces = []
        start = time.perf_counter()
        for i in range(n):
            boxes, probs = mtcnn.detect(frames[i % len(frames)])
            faces.append(0 if boxes is None else int((probs > 0.9).sum()))
        elapsed = time.perf_counter() - start
    print(json.dumps({"fps": n / elapsed, "faces": faces[: len(frames)], "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
