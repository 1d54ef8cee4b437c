"""Training throughput (scenes/s) and generator inference throughput (stamps/s).

Run: ``python benchmarks/bench_train.py [--device cpu|cuda|auto] [--steps N]``

- training: full steps of the default architecture (generator + detector,
  and with ``--adv`` the discriminator and the adversarial term) on random
  80x80x3 scenes with two galaxies each, batch 32 scenes;
- inference: `DeblendGenerator` at batch 64 of 80x80x3 stamps on 2 CPU threads,
  contiguous and ``channels_last`` (and on CUDA when present).
"""

import argparse
import time

import torch

from astrodeblend.models import ModelConfig, build_models, make_heatmap
from astrodeblend.train.losses import scaled_l1
from astrodeblend.utils import resolve_device


def bench_training(device, *, steps=3, batch=32, size=80, adv=False, amp=True):
    torch.manual_seed(0)
    models = {k: m.to(device) for k, m in build_models(ModelConfig()).items()}
    gen, det, disc = models["generator"], models["detector"], models["discriminator"]
    opts = [torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999))
            for m in (gen, det, disc)]
    n = 2 * batch
    blend = torch.rand(batch, 3, size, size, device=device)
    truth = torch.rand(n, 3, size, size, device=device)
    heat = make_heatmap(torch.rand(n, 2, device=device) * size, (size, size))
    dtype = torch.bfloat16 if device.type == "cuda" else None
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def step():
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None and amp):
            rep = blend.repeat_interleave(2, 0)
            fake = gen(rep, heat)
            loss = scaled_l1(fake.float(), truth, 1e-2)
            if adv:
                d = disc(torch.cat([rep, rep]), torch.cat([heat, heat]),
                         torch.cat([truth, fake.detach()]))
                bce(d.float(), torch.zeros_like(d.float())).backward()
                g = disc(rep, heat, fake)
                loss = loss + 0.01 * bce(g.float(), torch.ones_like(g.float()))
            loss.backward()
            det_loss = bce(det(blend).float(), torch.zeros(batch, 1, size, size,
                                                           device=device))
            det_loss.backward()
        for opt in opts:
            opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def bench_inference(device, *, channels_last, batch=64, repeats=5, size=80):
    torch.manual_seed(0)
    gen = build_models(ModelConfig())["generator"].to(device).eval()
    if channels_last:
        gen = gen.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device)
    h = make_heatmap(torch.full((batch, 2), size / 2, device=device), (size, size))
    with torch.inference_mode():
        gen(x, h)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            gen(x, h)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return repeats * batch / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    dev = resolve_device(args.device)
    if dev.type == "cuda":
        devices.append(dev)
    for device in devices:
        steps = args.steps if device.type == "cpu" else 20 * args.steps
        for adv in (False, True):
            rate = bench_training(device, steps=steps, adv=adv)
            print(f"train {device.type:4s} adv={adv!s:5s}: {rate:8.1f} scenes/s "
                  f"({2 * rate:.1f} galaxy stamps/s)")
        for cl in (False, True):
            repeats = 5 if device.type == "cpu" else 50
            rate = bench_inference(device, channels_last=cl, repeats=repeats)
            print(f"infer {device.type:4s} channels_last={cl!s:5s}: {rate:8.1f} stamps/s "
                  f"(batch 64, {torch.get_num_threads()} CPU threads)")


if __name__ == "__main__":
    main()
