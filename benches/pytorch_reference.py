#!/usr/bin/env python3
"""The same pix2pix step in PyTorch, timed the way benches/step.rs times ours.

Networks and step order are those of tests/pytorch/compare_step.py (written from shared/SPEC.md),
with dropout on as in training. Configurations:
  eager   fp32, cudnn.benchmark off            (CPU or GPU)
  bench   fp32, cudnn.benchmark on             (GPU)
  bf16cl  bf16 autocast + channels_last, cudnn.benchmark on (GPU)

    python benches/pytorch_reference.py --device cpu --size 128,256 --batch 1
    python benches/pytorch_reference.py --device cuda --size 256 --batch 1,8,64 --configs eager,bench,bf16cl
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pytorch"))
from compare_step import PatchD, Unet, gan_loss  # noqa: E402
import compare_cyclegan_step as cg  # noqa: E402
import itertools  # noqa: E402

GFLOP = {128: 21.3, 256: 87.4}


def make(size, batch, device, channels_last):
    G = Unet(8 if size % 256 == 0 else 7, 64, dropout=True).to(device)
    D = PatchD(6, 64, 3).to(device)
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    oG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    a = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    b = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    if channels_last:
        a, b = a.to(memory_format=torch.channels_last), b.to(memory_format=torch.channels_last)
    return G, D, oG, oD, a, b


def step(G, D, oG, oD, a, b, autocast, device):
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
        fake = G(a)
        for q in D.parameters():
            q.requires_grad = True
        oD.zero_grad()
        lf = gan_loss("vanilla", D(torch.cat((a, fake), 1).detach()).float(), False)
        lr = gan_loss("vanilla", D(torch.cat((a, b), 1)).float(), True)
        ((lf + lr) * 0.5).backward()
        oD.step()
        for q in D.parameters():
            q.requires_grad = False
        oG.zero_grad()
        lg = gan_loss("vanilla", D(torch.cat((a, fake), 1)).float(), True) + nn.L1Loss()(fake.float(), b) * 100
        lg.backward()
        oG.step()


def cycle_gan_step(G_A, G_B, D_A, D_B, oG, oD, real_A, real_B):
    """CycleGAN's optimize_parameters() (SPEC.md §7; tests/pytorch/compare_cyclegan_step.py), pool 0."""
    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    for q in itertools.chain(D_A.parameters(), D_B.parameters()):
        q.requires_grad = False
    oG.zero_grad()
    l1 = nn.L1Loss()
    loss = (l1(G_A(real_B), real_B) * 5 + l1(G_B(real_A), real_A) * 5 + cg.mse(D_A(fake_B), True)
            + cg.mse(D_B(fake_A), True) + l1(rec_A, real_A) * 10 + l1(rec_B, real_B) * 10)
    loss.backward()
    oG.step()
    for q in itertools.chain(D_A.parameters(), D_B.parameters()):
        q.requires_grad = True
    oD.zero_grad()
    for D, real, fake in ((D_A, real_B, fake_B), (D_B, real_A, fake_A)):
        ((cg.mse(D(real), True) + cg.mse(D(fake.detach()), False)) * 0.5).backward()
    oD.step()


def run_cycle_gan(a):
    print(f"torch {torch.__version__}, cycle_gan resnet_9blocks ngf 64, IN PatchGAN ndf 64, pool 0, "
          f"cpu ({torch.get_num_threads()} threads)")
    for size in map(int, a.size.split(",")):
        G_A, G_B = cg.ResnetG(64, 9).to(a.device), cg.ResnetG(64, 9).to(a.device)
        D_A, D_B = cg.PatchD(64, 3).to(a.device), cg.PatchD(64, 3).to(a.device)
        oG = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
        oD = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
        x = torch.rand(1, 3, size, size, device=a.device) * 2 - 1
        y = torch.rand(1, 3, size, size, device=a.device) * 2 - 1
        for _ in range(a.warmup):
            cycle_gan_step(G_A, G_B, D_A, D_B, oG, oD, x, y)
        times, cpu = [], []
        for _ in range(a.iters):
            t, c = time.perf_counter(), time.process_time()
            cycle_gan_step(G_A, G_B, D_A, D_B, oG, oD, x, y)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med = statistics.median(times)
        flop = 1880.0 * (size / 256) ** 2
        # Also the CPU time of the process (all threads) per step, median: on a shared machine the
        # wall time includes waiting for a core, the CPU time does not.
        print(f"  eager {size:>5}     1 {med * 1e3:>10.2f} {1 / med:>9.2f} {flop / med:>9.1f}"
              f"   cpu {statistics.median(cpu) * 1e3:.2f} ms")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default="256")
    p.add_argument("--batch", default="1")
    p.add_argument("--configs", default="eager")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--model", default="pix2pix", choices=["pix2pix", "cycle_gan"])
    a = p.parse_args()
    if a.model == "cycle_gan":
        return run_cycle_gan(a)
    cuda = a.device.startswith("cuda")
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if cuda else f'cpu ({torch.get_num_threads()} threads)'}")
    print(f"{'config':>7} {'size':>5} {'batch':>5} {'ms/iter':>10} {'img/s':>9} {'GFLOP/s':>9} {'mem MiB':>8}")
    for cfg in a.configs.split(","):
        torch.backends.cudnn.benchmark = cfg in ("bench", "bf16cl")
        for size in map(int, a.size.split(",")):
            for batch in map(int, a.batch.split(",")):
                G, D, oG, oD, x, y = make(size, batch, a.device, cfg == "bf16cl")
                for _ in range(a.warmup):
                    step(G, D, oG, oD, x, y, cfg == "bf16cl", a.device)
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(a.iters):
                    t = time.perf_counter()
                    step(G, D, oG, oD, x, y, cfg == "bf16cl", a.device)
                    if cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
                med = statistics.median(times)
                mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
                flop = GFLOP.get(size, 87.4 * (size / 256) ** 2) * batch
                print(f"{cfg:>7} {size:>5} {batch:>5} {med * 1e3:>10.2f} {batch / med:>9.2f} {flop / med:>9.1f} {mem:>8.0f}")
                del G, D, oG, oD, x, y


if __name__ == "__main__":
    main()
