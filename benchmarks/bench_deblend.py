"""Throughput and memory of the deblender (issue 5).

Prints:
- generator throughput: 80x80x3 stamps per second, batch 64, on 2 CPU
  threads (channels_last and contiguous; float32 and, where the deblender
  would use it, its mixed precision: bfloat16 on a CPU that has it), and on
  CUDA when present;
- the same for the centre detector;
- whole-CLI throughput: files per second of ``astrodeblend deblend`` on
  128x128 3-band FITS cutouts, in one process, and the peak resident memory.

Figures are relative to nothing but themselves; run on an idle machine::

    python benchmarks/bench_deblend.py [--n-files 40] [--model CHECKPOINT]
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def stamps_per_second(model, inputs, *, repeat=5, channels_last=False, dtype=None):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
    else:
        model = model.to(memory_format=torch.contiguous_format)
    with torch.inference_mode(), torch.autocast(inputs[0].device.type, dtype=dtype,
                                                enabled=dtype is not None):
        model(*inputs)
        start = time.perf_counter()
        for _ in range(repeat):
            model(*inputs)
        if inputs[0].is_cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeat
    return inputs[0].shape[0] / seconds


def bench_models(device, model=None):
    from astrodeblend.models import make_heatmap
    from astrodeblend.pipeline import Deblender

    deblender = Deblender.load(model, device=device)
    size, bands = deblender.size, deblender.n_bands
    blend = torch.rand(64, bands, size, size, device=device)
    heat = make_heatmap(torch.full((64, 2), size / 2, device=device), (size, size),
                        device=device)
    for name, model, inputs in [("generator", deblender.generator, [blend, heat]),
                                ("detector", deblender.detector, [blend])]:
        if model is None:
            continue
        for precision in dict.fromkeys(("float32", deblender.precision)):
            dtype = None if precision == "float32" else getattr(torch, precision)
            for cl in (False, True):
                rate = stamps_per_second(model, inputs, channels_last=cl, dtype=dtype)
                print(f"{name:9s} {device.type:4s} batch 64 {size}x{size}x{bands} "
                      f"{precision:8s} channels_last={cl!s:5s}: {rate:8.0f} stamps/s")


def bench_cli(n_files, model=None):
    from bench_cli import make_cutouts  # the cutouts of benchmarks/bench_cli.py

    from astrodeblend.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted(make_cutouts(tmp, n_files, size=128, n_galaxies=(2, 2)).glob("*.fits"))
        out = Path(tmp) / "out"
        start = time.perf_counter()
        status = main(["deblend", *map(str, paths), "--output-dir", str(out),
                       "--device", "cpu", "--no-progress",
                       *([] if model is None else ["--model", str(model)])])
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CLI deblend, {n_files} files of 128x128x3 FITS: {n_files / seconds:.1f} files/s "
          f"(exit {status}); peak RSS {peak_mib:.0f} MiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-files", type=int, default=40)
    parser.add_argument("--model", default=None,
                        help="checkpoint to measure (default: the shipped model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    bench_models(torch.device("cpu"), args.model)
    if torch.cuda.is_available():
        bench_models(torch.device("cuda"), args.model)
    bench_cli(args.n_files, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
