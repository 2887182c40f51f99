"""Affine warps side by side: gradbook.warp.warp_affine, kornia's warp_affine, cv2.warpAffine.

    python benchmarks/bench_warp.py              # 3x512x512 and 16x3x128x128, float32
    python benchmarks/bench_warp.py --quick      # smaller sizes, to check that it runs
    python benchmarks/bench_warp.py --device cuda

Each case warps float32 images by a rotation with scale and a sub-pixel shift (one
matrix per sample), bilinear, zero border. Modes: ``forward`` and ``forward+backward``
(gradients with respect to the image and the matrix, from ``out.backward(ones)``);
``cv2.warpAffine`` runs forward only (no gradient) on the CPU, looping over a batch.
Before timing, every method's output is compared with the exact float64 reference
(:func:`gradbook.warp.warp_affine_naive`) and with OpenCV; the errors are stored next
to the times. Target: gradbook no slower than kornia by more than 10% in either mode.
Writes ``book/data/bench_warp.json``.

One torch and one OpenCV thread by default (``--threads``), so that the three are
compared on equal terms; the methods are timed round-robin (``--repeat`` rounds) and
the medians kept, so that load from other work on the machine falls on all alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import cv2
import kornia
import kornia.geometry.transform as kornia_transform
import numpy as np
import torch
from _common import interleaved_medians, write_results
from tqdm import tqdm

from gradbook.warp import rotation_matrix_2d, synthetic_scene, warp_affine, warp_affine_naive

DTYPE = torch.float32


def make_case(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, size, size)`` scenes and ``(B, 2, 3)`` float32 matrices."""
    scene = synthetic_scene(size, size, dtype=DTYPE)
    images = torch.stack([torch.roll(scene, shifts=3 * k, dims=-1) for k in range(batch)])
    angles = torch.linspace(5.0, 40.0, batch, dtype=torch.float64)
    centre = torch.tensor([size / 2 - 0.3, size / 2 + 0.2], dtype=torch.float64)
    M = rotation_matrix_2d(centre, angles, 0.9)
    M[:, :, 2] += torch.tensor([0.37, -0.21], dtype=torch.float64)
    return images, M.to(DTYPE)


def cv2_warp(images: torch.Tensor, M: torch.Tensor, dsize: tuple[int, int]) -> Callable[[], list]:
    """OpenCV on each ``(H, W, 3)`` float32 image (arrays prepared outside the timing)."""
    arrays = [np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in images]
    matrices = M.double().numpy()
    height, width = dsize
    return lambda: [
        cv2.warpAffine(a, m, (width, height), flags=cv2.INTER_LINEAR)
        for a, m in zip(arrays, matrices, strict=True)
    ]


def timed_functions(
    warp: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    M: torch.Tensor,
) -> dict[str, Callable[[], object]]:
    """``warp(images, M)`` forward, and forward + backward to the image and the matrix."""

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return warp(images, M)

    image_g = images.clone().requires_grad_(True)
    M_g = M.clone().requires_grad_(True)
    ones = torch.ones_like(forward())

    def forward_backward() -> None:
        image_g.grad = M_g.grad = None
        warp(image_g, M_g).backward(ones)

    return {"forward": forward, "forward+backward": forward_backward}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: 3x128x128, 4x3x64x64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    parser.add_argument("--repeat", type=int, default=25, help="timed runs of each method")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    cases = [(1, 128), (4, 64)] if args.quick else [(1, 512), (16, 128)]

    rows = []
    progress = tqdm(total=len(cases), desc="bench_warp")
    for batch, size in cases:
        label = f"{batch}x3x{size}x{size}" if batch > 1 else f"3x{size}x{size}"
        images, M = make_case(batch, size)
        dsize = (size, size)
        exact = warp_affine_naive(images, M, dsize).float()
        reference_cv2 = torch.from_numpy(np.stack(cv2_warp(images, M, dsize)())).permute(0, 3, 1, 2)
        images_d, M_d = images.to(device), M.to(device)
        methods = {
            "gradbook": partial(warp_affine, dsize=dsize),
            "kornia": partial(kornia_transform.warp_affine, dsize=dsize),
        }
        errors, fns = {}, {}
        for name, warp in methods.items():
            with torch.no_grad():
                out = warp(images_d, M_d).cpu()
            errors[name] = {
                "max_err_exact": (out - exact).abs().max().item(),
                "max_err_cv2": (out - reference_cv2).abs().max().item(),
            }
            for mode, fn in timed_functions(warp, images_d, M_d).items():
                fns[(name, mode)] = fn
        fns[("cv2.warpAffine", "forward")] = cv2_warp(images, M, dsize)
        errors["cv2.warpAffine"] = {
            "max_err_exact": (reference_cv2 - exact).abs().max().item(),
            "max_err_cv2": 0.0,
        }
        times = {
            key: 1e3 * value
            for key, value in interleaved_medians(fns, device, repeat=args.repeat).items()
        }
        for (name, mode), time_ms in times.items():
            rows.append(
                {"case": label, "method": name, "mode": mode, "time_ms": time_ms, **errors[name]}
            )
        progress.update()
    progress.close()

    ratios = {}
    for row in rows:
        if row["method"] == "gradbook":
            peer = next(
                r
                for r in rows
                if r["method"] == "kornia" and r["case"] == row["case"] and r["mode"] == row["mode"]
            )
            ratios[f"{row['case']} {row['mode']}"] = row["time_ms"] / peer["time_ms"]
    for key, ratio in ratios.items():
        print(f"{key:34s} gradbook / kornia = {ratio:.2f}")
    write_results(
        "warp",
        rows,
        device=device,
        dtype=str(DTYPE),
        quick=args.quick,
        threads=args.threads,
        opencv=cv2.__version__,
        kornia=kornia.__version__,
        ratio_to_kornia=ratios,
        target="gradbook no slower than kornia by more than 10% (ratio <= 1.1)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
