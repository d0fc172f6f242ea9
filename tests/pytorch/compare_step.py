#!/usr/bin/env python3
"""Check one `pix2pix step` dump against PyTorch, line by line.

The networks and the step below are written from shared/SPEC.md (§1-§5): the reference's
UnetGenerator (nested skip blocks, in-place LeakyReLU skips), NLayerDiscriminator, GANLoss and
optimize_parameters(), with torch.optim.Adam. They load the same start checkpoint as the engine
(`pix2pix init`), run one iteration on the same A|B image, and every loss, fake_B, gradient,
updated weight and running statistic is compared with the engine's dump.

    pix2pix init --name cmp --netG unet_128 --ngf 8 --ndf 8
    pix2pix step --name cmp --netG unet_128 --ngf 8 --ndf 8 --no-dropout --image pair.png --out step.safetensors
    python tests/pytorch/compare_step.py --dir checkpoints/cmp --netG unet_128 --ngf 8 --ndf 8 \
        --image pair.png --step step.safetensors

Needs torch, numpy, pillow and safetensors. Dropout must be off on both sides (--no-dropout):
the engine draws its masks from its own counter-based hash.
"""
import argparse
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file


class Block(nn.Module):
    """One U-Net level, laid out as the reference's UnetSkipConnectionBlock (same child indices)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, sub=None, outermost=False, innermost=False, dropout=False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
        drelu, dnorm = nn.LeakyReLU(0.2, True), nn.BatchNorm2d(inner_nc)
        urelu, unorm = nn.ReLU(True), nn.BatchNorm2d(outer_nc)
        if outermost:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            layers = [down, sub, urelu, up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False)
            layers = [drelu, down, urelu, up, unorm]
        else:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False)
            layers = [drelu, down, dnorm, sub, urelu, up, unorm] + ([nn.Dropout(0.5)] if dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # x was LeakyReLU'd in place: the skip is LReLU(x)


class Unet(nn.Module):
    def __init__(self, num_downs, ngf, dropout):
        super().__init__()
        b = Block(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            b = Block(ngf * 8, ngf * 8, sub=b, dropout=dropout)
        b = Block(ngf * 4, ngf * 8, sub=b)
        b = Block(ngf * 2, ngf * 4, sub=b)
        b = Block(ngf, ngf * 2, sub=b)
        self.model = Block(3, ngf, input_nc=3, sub=b, outermost=True)

    def forward(self, x):
        return self.model(x)


class PatchD(nn.Module):
    def __init__(self, input_nc, ndf, n_layers):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def gan_loss(mode, pred, real):
    target = torch.full_like(pred, 1.0 if real else 0.0)
    return nn.BCEWithLogitsLoss()(pred, target) if mode == "vanilla" else nn.MSELoss()(pred, target)


def load_pair(path, direction):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    w2 = img.shape[1] // 2
    a, b = img[:, :w2], img[:, w2:]
    if direction == "BtoA":
        a, b = b, a
    t = lambda x: (torch.from_numpy(x.copy()).permute(2, 0, 1)[None] - 0.5) / 0.5
    return t(a), t(b)


def run_reference(a, dtype):
    """One optimize_parameters() call (SPEC.md §3) in `dtype`; returns every tensor the engine dumps."""
    G = Unet(8 if a.netG == "unet_256" else 7, a.ngf, dropout=False)
    D = PatchD(6, a.ndf, 3)
    G.load_state_dict(load_file(f"{a.dir}/{a.epoch}_net_G.safetensors"), strict=True)
    D.load_state_dict(load_file(f"{a.dir}/{a.epoch}_net_D.safetensors"), strict=True)
    G, D = G.to(dtype), D.to(dtype)
    G.train(), D.train()
    opt_G = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(a.beta1, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(a.beta1, 0.999))
    real_A, real_B = (t.to(dtype) for t in load_pair(a.image, a.direction))

    fake_B = G(real_A)
    for q in D.parameters():
        q.requires_grad = True
    opt_D.zero_grad()
    loss_D_fake = gan_loss(a.gan_mode, D(torch.cat((real_A, fake_B), 1).detach()), False)
    loss_D_real = gan_loss(a.gan_mode, D(torch.cat((real_A, real_B), 1)), True)
    ((loss_D_fake + loss_D_real) * 0.5).backward()
    opt_D.step()
    for q in D.parameters():
        q.requires_grad = False
    opt_G.zero_grad()
    loss_G_GAN = gan_loss(a.gan_mode, D(torch.cat((real_A, fake_B), 1)), True)
    loss_G_L1 = nn.L1Loss()(fake_B, real_B) * a.lambda_l1
    (loss_G_GAN + loss_G_L1).backward()
    opt_G.step()

    ref = {
        "fake_B": fake_B.detach(),
        "loss_G_GAN": loss_G_GAN.detach(),
        "loss_G_L1": loss_G_L1.detach(),
        "loss_D_real": loss_D_real.detach(),
        "loss_D_fake": loss_D_fake.detach(),
        "real_A": real_A,
        "real_B": real_B,
    }
    for prefix, net in (("netG.", G), ("netD.", D)):
        for k, v in net.state_dict().items():
            ref[prefix + k] = v
        for k, q in net.named_parameters():
            ref[prefix + k + ".grad"] = q.grad
    return ref


def rel(o, r):
    o, r = o.double().reshape(-1), r.double().reshape(-1)
    if o.shape != r.shape:
        return float("inf"), float("inf")
    d = (o - r).norm()
    return float(d / r.norm() if r.norm() > 0 else d), float((o - r).abs().max())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="checkpoint folder holding EPOCH_net_G/D.safetensors")
    p.add_argument("--epoch", default="latest")
    p.add_argument("--netG", default="unet_256", choices=["unet_256", "unet_128"])
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--gan-mode", default="vanilla")
    p.add_argument("--lambda-l1", type=float, default=100.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--image", required=True)
    p.add_argument("--step", required=True, help="the engine's step dump")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument(
        "--double",
        action="store_true",
        help="also run the reference in float64 and judge both fp32 results against it: the engine "
        "passes a row when its error is within --tol or within 10x PyTorch fp32's own error",
    )
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)

    ours = load_file(a.step)
    ref = run_reference(a, torch.float32)
    ref64 = run_reference(a, torch.float64) if a.double else None

    # Updated parameters after one Adam step from fresh moments: each moves by lr·g/(|g| + eps),
    # i.e. by about ±lr, so a gradient within rounding of zero may flip sign and differ by 2·lr.
    # They are judged by max |d| ≤ 2·lr; everything else by relative error.
    is_param = lambda k: k.startswith("net") and not k.endswith(".grad") and f"{k}.grad" in ref
    rows, missing = [], sorted(set(ref) - set(ours))
    for k in sorted(ref):
        if k not in ours:
            continue
        e, m = rel(ours[k], ref[k])
        e64, t64 = (rel(ours[k], ref64[k])[0], rel(ref[k], ref64[k])[0]) if ref64 is not None else (None, None)
        rows.append([k, e, m, e64, t64, None])
    # With --double: no worse than PyTorch fp32 is against float64 anywhere in this step (GAN
    # gradients flip LReLU masks near zero, so fp32 errors of 1e-4 are normal at unet_256 scale).
    worst_t64 = max((r[4] for r in rows if ref64 is not None and not is_param(r[0])), default=0.0)
    for r in rows:
        k, e, m, e64, t64, _ = r
        if is_param(k):
            r[5] = m <= 2.0 * a.lr * 1.001 + 1e-7
        elif ref64 is None:
            r[5] = e <= a.tol
        else:
            r[5] = e <= a.tol or e64 <= max(a.tol, 10 * t64, 2 * worst_t64)
    width = max(len(k) for k, *_ in rows)
    head = f"{'tensor':<{width}}  {'vs torch32':>10}  {'max |d|':>9}"
    if ref64 is not None:
        head += f"  {'vs torch64':>10}  {'torch32 vs 64':>13}"
    print(head)
    for k, e, m, e64, t64, ok in rows:
        line = f"{k:<{width}}  {e:10.2e}  {m:9.2e}"
        if ref64 is not None:
            line += f"  {e64:10.2e}  {t64:13.2e}"
        print(line + ("" if ok else "  <-- over tolerance"))
    bad = [k for k, *_, ok in rows if not ok]
    worst = max(rows, key=lambda r: r[1])
    print(f"{len(rows)} tensors compared, worst vs torch fp32 {worst[1]:.2e} ({worst[0]}); missing from the dump: {missing or 'none'}")
    if ref64 is not None:
        w64 = max(rows, key=lambda r: r[3])
        t64 = max(rows, key=lambda r: r[4])
        print(f"against float64: engine worst {w64[3]:.2e} ({w64[0]}), PyTorch fp32 worst {t64[4]:.2e} ({t64[0]})")
    if bad or missing:
        print(f"FAIL: {len(bad)} rows over tolerance")
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
