#!/usr/bin/env python3
"""Check one `pix2pix step --model cycle_gan` dump against PyTorch, line by line.

The networks and the step below are written from shared/SPEC.md §7: the reference's
ResnetGenerator (ReflectionPad, InstanceNorm(affine=False), ResnetBlocks, ConvTranspose with
output_padding 1) and NLayerDiscriminator with InstanceNorm, the GAN (lsgan), cycle and identity
losses and CycleGAN's optimize_parameters() (G step first with D frozen, then D_A and D_B, real
pass first), with torch.optim.Adam over the chained parameters. They load the same start
checkpoint as the engine (`pix2pix init --model cycle_gan`), run one iteration on the same A|B
image (A half = real_A, B half = real_B), and every loss, visual, gradient and updated weight of
G_A, G_B, D_A and D_B is compared with the engine's dump.

    pix2pix init --model cycle_gan --name cg --netG resnet_6blocks --ngf 8 --ndf 8
    pix2pix step --model cycle_gan --name cg --netG resnet_6blocks --ngf 8 --ndf 8 --pool-size 0 \
        --image pair.png --out step.safetensors
    python tests/pytorch/compare_cyclegan_step.py --dir checkpoints/cg --n-blocks 6 --ngf 8 --ndf 8 \
        --image pair.png --step step.safetensors

The image pool: with --pool-size 0, and on the first step of any pool size (an empty pool stores
the fake and returns it), D trains on the current fakes. With a warm pool (`step --warm-pool
--pool-size 50`: both pools full of known images, dumped as pool_A/pool_B with their state after
the step as pool_A.after/pool_B.after) pass --warm-pool: the reference's query of a full pool
either returns the new fake (pool unchanged) or returns stored image j and stores the fake in
slot j. The engine's draw is read off its pool after the step (which slot changed, if any); the
script checks that exactly that is what happened (at most one slot changed, and it now holds this
step's fake), trains D on what the reference would return for that draw, and compares the pools
after the step like every other tensor.
Needs torch, numpy, pillow and safetensors.
"""
import argparse
import itertools
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file


def norm(c):
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=True), norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=True), norm(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetG(nn.Module):
    def __init__(self, ngf, n_blocks):
        super().__init__()
        m = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, padding=0, bias=True), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            m += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=True), norm(ngf * mult * 2), nn.ReLU(True)]
        m += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            m += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=True),
                  norm(ngf * mult // 2), nn.ReLU(True)]
        m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x):
        return self.model(x)


class PatchD(nn.Module):
    def __init__(self, ndf, n_layers):
        super().__init__()
        seq = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=True), norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=True), norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def mse(pred, real):
    return nn.MSELoss()(pred, torch.full_like(pred, 1.0 if real else 0.0))


def load_pair(path, direction):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    w2 = img.shape[1] // 2
    a, b = img[:, :w2], img[:, w2:]
    if direction == "BtoA":
        a, b = b, a
    t = lambda x: (torch.from_numpy(x.copy()).permute(2, 0, 1)[None] - 0.5) / 0.5
    return t(a), t(b)


def pool_draws(ours):
    """Per pool ("pool_A", "pool_B"): the slot the engine's query replaced, or None (new fake returned)."""
    draws = {}
    for name in ("pool_A", "pool_B"):
        before, after = ours[name], ours[name + ".after"]
        changed = [j for j in range(before.shape[0]) if not torch.equal(before[j], after[j])]
        if len(changed) > 1:
            sys.exit(f"FAIL: the engine's {name} changed {len(changed)} slots in one query of one image: {changed}")
        draws[name] = changed[0] if changed else None
    return draws


def run_reference(a, dtype, pools=None):
    nets = {}
    for name in ("G_A", "G_B"):
        nets[name] = ResnetG(a.ngf, a.n_blocks)
    for name in ("D_A", "D_B"):
        nets[name] = PatchD(a.ndf, 3)
    for name, net in nets.items():
        net.load_state_dict(load_file(f"{a.dir}/{a.epoch}_net_{name}.safetensors"), strict=True)
        net.to(dtype).train()
    G_A, G_B, D_A, D_B = (nets[n] for n in ("G_A", "G_B", "D_A", "D_B"))
    opt_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=a.lr, betas=(a.beta1, 0.999))
    opt_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=a.lr, betas=(a.beta1, 0.999))
    real_A, real_B = (t.to(dtype) for t in load_pair(a.image, a.direction))
    la, lb, li = a.lambda_A, a.lambda_B, a.lambda_identity

    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    for q in itertools.chain(D_A.parameters(), D_B.parameters()):
        q.requires_grad = False
    opt_G.zero_grad()
    idt_A = G_A(real_B)
    loss_idt_A = nn.L1Loss()(idt_A, real_B) * lb * li
    idt_B = G_B(real_A)
    loss_idt_B = nn.L1Loss()(idt_B, real_A) * la * li
    loss_G_A = mse(D_A(fake_B), True)
    loss_G_B = mse(D_B(fake_A), True)
    loss_cycle_A = nn.L1Loss()(rec_A, real_A) * la
    loss_cycle_B = nn.L1Loss()(rec_B, real_B) * lb
    (loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B).backward()
    opt_G.step()
    for q in itertools.chain(D_A.parameters(), D_B.parameters()):
        q.requires_grad = True
    opt_D.zero_grad()
    losses_D, pools_after = [], {}
    for D, real, fake, pool in ((D_A, real_B, fake_B, "pool_B"), (D_B, real_A, fake_A, "pool_A")):
        fake_in = fake.detach()
        if pools is not None:
            # ImagePool.query on a full pool: the stored image of slot j is returned and the new
            # fake takes its place, or (no slot) the new fake is returned and the pool kept.
            stored, j = pools["before"][pool].to(dtype).clone(), pools["draws"][pool]
            if j is not None:
                fake_in = stored[j:j + 1].clone()
                stored[j] = fake.detach()[0]
            pools_after[pool + ".after"] = stored
        loss_real = mse(D(real), True)
        loss_fake = mse(D(fake_in), False)
        loss = (loss_real + loss_fake) * 0.5
        loss.backward()
        losses_D.append(loss)
    opt_D.step()

    ref = {"real_A": real_A, "real_B": real_B, **pools_after}
    for k, v in (("fake_B", fake_B), ("rec_A", rec_A), ("fake_A", fake_A), ("rec_B", rec_B),
                 ("idt_A", idt_A), ("idt_B", idt_B)):
        ref[k] = v.detach()
    for k, v in (("D_A", losses_D[0]), ("G_A", loss_G_A), ("cycle_A", loss_cycle_A), ("idt_A", loss_idt_A),
                 ("D_B", losses_D[1]), ("G_B", loss_G_B), ("cycle_B", loss_cycle_B), ("idt_B", loss_idt_B)):
        ref["loss_" + k] = v.detach()
    for name, net in nets.items():
        for k, v in net.state_dict().items():
            ref[f"net{name}.{k}"] = v
        for k, q in net.named_parameters():
            ref[f"net{name}.{k}.grad"] = q.grad
    return ref


def rel(o, r):
    o, r = o.double().reshape(-1), r.double().reshape(-1)
    if o.shape != r.shape:
        return float("inf"), float("inf")
    d = (o - r).norm()
    return float(d / r.norm() if r.norm() > 0 else d), float((o - r).abs().max())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="checkpoint folder holding EPOCH_net_{G_A,G_B,D_A,D_B}.safetensors")
    p.add_argument("--epoch", default="latest")
    p.add_argument("--n-blocks", type=int, default=9)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--lambda-A", dest="lambda_A", type=float, default=10.0)
    p.add_argument("--lambda-B", dest="lambda_B", type=float, default=10.0)
    p.add_argument("--lambda-identity", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--direction", default="AtoB")
    p.add_argument("--image", required=True)
    p.add_argument("--step", required=True, help="the engine's step dump")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--warm-pool", action="store_true",
                   help="the dump comes from `step --warm-pool`: full pools, D trains on the engine's draw")
    p.add_argument("--double", action="store_true",
                   help="also run the reference in float64: a row passes when the engine is within --tol of "
                        "PyTorch fp32 or no further from float64 than 10x PyTorch fp32's own error")
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)

    ours = load_file(a.step)
    pools = None
    if a.warm_pool:
        pools = {"before": {k: ours[k] for k in ("pool_A", "pool_B")}, "draws": pool_draws(ours)}
        for name, j in pools["draws"].items():
            what = f"returned stored image {j}, the new fake took its slot" if j is not None else "returned the new fake"
            print(f"{name} ({pools['before'][name].shape[0]} images): the engine's query {what}")
    ref = run_reference(a, torch.float32, pools)
    ref64 = run_reference(a, torch.float64, pools) if a.double else None
    # Updated parameters after one Adam step from fresh moments move by about ±lr each; a
    # gradient within rounding of zero may flip sign: judged by max |d| <= 2·lr.
    is_param = lambda k: k.startswith("net") and not k.endswith(".grad") and f"{k}.grad" in ref
    rows, missing = [], sorted(set(ref) - set(ours))
    for k in sorted(ref):
        if k not in ours:
            continue
        e, m = rel(ours[k], ref[k])
        e64, t64 = (rel(ours[k], ref64[k])[0], rel(ref[k], ref64[k])[0]) if ref64 is not None else (None, None)
        ok = m <= 2.0 * a.lr * 1.001 + 1e-7 if is_param(k) else (
            e <= a.tol or (ref64 is not None and e64 <= max(a.tol, 10 * t64)))
        rows.append((k, e, m, e64, t64, ok))
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
    nonparam = [r for r in rows if not is_param(r[0])]
    worst = max(nonparam, key=lambda r: r[1])
    print(f"{len(rows)} tensors compared, worst (losses, visuals, gradients) vs torch fp32 {worst[1]:.2e} ({worst[0]}); "
          f"missing from the dump: {missing or 'none'}")
    if ref64 is not None:
        w64 = max(nonparam, key=lambda r: r[3])
        t64 = max(nonparam, key=lambda r: r[4])
        print(f"against float64: engine worst {w64[3]:.2e} ({w64[0]}), PyTorch fp32 worst {t64[4]:.2e} ({t64[0]})")
    if bad or missing:
        print(f"FAIL: {len(bad)} rows over tolerance")
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
