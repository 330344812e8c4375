"""Conditioning figures: inpainting against the exact conditional, and the digits model's guidance and inpainting.

    python benchmarks/conditioning_tables.py [oracle] [digits-guidance] [digits-inpainting]

Prints Markdown tables (committed in docs/guidance.md), all seeded:

1. **oracle**: a random 8-D, 4-mode mixture under VP with coordinates 0–3 observed at a
   draw of the mixture; every inpainting method offered, on 8192 samples, judged on the
   unknown coordinates against the exact conditional p(x_u | y) (``GaussianMixture.condition``)
   by :func:`sdekit.testing.evaluate` (NLL gap, sliced W1 and mode TV against the spread of
   exact sets of the same size, false-alarm rate 0.1 %). DPS observes y with noise σ_y = 0.05
   and is judged against the exact posterior of that noisy observation.
2. **digits-guidance**: classifier guidance through the shipped noise-conditional classifier,
   100 samples of each class per scale with the adaptive SDE sampler (the CLI's default);
   recognition by the shipped clean classifier, and FD-digits per class (100 samples against
   the second half of that class's real digits, beside the first half's FD against them).
3. **digits-inpainting**: the bottom half of the first 512 real digits redrawn; label
   agreement with the originals (clean classifier), RMSE on the redrawn pixels, FD-digits.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

import sdekit
from sdekit.constraints import Imputation
from sdekit.guidance import ClassifierGuidance, PosteriorSampling
from sdekit.testing import GaussianMixture, evaluate

F64 = torch.float64


def oracle_table(n: int = 8192) -> None:
    mixture, known, y = inpainting_problem()
    sde = sdekit.VPSDE()
    exact = mixture.condition(known, y)
    y_full = torch.zeros(1, 8, dtype=F64)
    y_full[0, known] = y
    noise_std = 0.05
    noisy = _noisy_observation_posterior(mixture, known, y, noise_std)
    score = mixture.score(sde)
    weights = exact.weights.numpy().round(3)
    print(f"8-D mixture, 4 modes, VP; coordinates 0-3 observed; exact conditional weights {weights}\n")
    print("| method | options | NFE | NLL gap (nats; exact-set limit) | SW1 ÷ floor | mode TV ÷ floor | at floor | s |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    rows: list[tuple[str, Any, dict[str, Any], Any, GaussianMixture]] = [
        ("exact conditional score", sdekit.sample, {"method": "adaptive"}, None, exact),
        *[
            (
                f"replacement, {m}",
                f,
                {"method": m} | ({"steps": s} if s else {}),
                Imputation(sde, y_full, known[None]),
                exact,
            )
            for f, m, s in [
                (sdekit.sample, "adaptive", None),
                (sdekit.sample, "ancestral", 1000),
                (sdekit.sample, "euler_maruyama", 1000),
                (sdekit.sample, "dpmpp_2m_sde", 100),
                (sdekit.ode_sample, "dpmpp_2m", 50),
            ]
        ],
        *[
            (
                f"RePaint r={r}, j={j}, ancestral",
                sdekit.sample,
                {"method": "ancestral", "steps": s},
                Imputation(sde, y_full, known[None], resample=r, jump_length=j),
                exact,
            )
            for s, r, j in [(100, 10, 10), (200, 5, 10)]
        ],
        ("DPS (σ_y = 0.05), ancestral", sdekit.sample, {"method": "ancestral", "steps": 1000}, "dps", noisy),
    ]
    for name, sampler, options, constraint, target in rows:
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(2)
        if constraint is None:  # the conditional's own score on the unknown coordinates
            x_u, info = sampler(sde, target.score(sde), (n, 4), dtype=F64, generator=generator, return_info=True,
                                **options)  # fmt: skip
        elif constraint == "dps":
            guide = PosteriorSampling(score, sde, lambda x: x[:, known], y[None], noise_std=noise_std)
            x, info = sampler(sde, guide, (n, 8), dtype=F64, generator=generator, return_info=True, **options)
            x_u = x[:, ~known]
        else:
            x, info = sampler(sde, score, (n, 8), dtype=F64, generator=generator, return_info=True,
                              constraint=constraint, **options)  # fmt: skip
            assert torch.equal(x[:, known], y.expand(n, 4))
            x_u = x[:, ~known]
        report = evaluate(x_u, target)
        shown = {k: v for k, v in options.items() if k != "method"}
        print(
            f"| {name} | {shown} | {info.nfe} | {report.nll_gap:+.3f} (±{report.nll_limit:.3f}) | "
            f"{report.sw1 / report.sw1_floor:.2f} | {report.tv / report.tv_floor:.2f} | "
            f"{'yes' if report.at_floor() else 'no: ' + ', '.join(report.failures())} | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


def inpainting_problem() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """A random 8-D, 4-mode mixture whose components 0, 1 (and 2, 3) share their means on coordinates 0–3,
    observed there at a draw of component 0: the known half does not tell 0 from 1, so the exact
    conditional has two modes of comparable weight (and the unknown half is correlated with the known)."""
    base = GaussianMixture.random(dim=8, modes=4, generator=torch.Generator().manual_seed(0))
    means = base.means.clone()
    means[1, :4], means[3, :4] = means[0, :4], means[2, :4]
    mixture = GaussianMixture(base.weights, means, base.covariances)
    known = torch.arange(8) < 4
    y = mixture.component(0).sample(1, generator=torch.Generator().manual_seed(1)).double()[0, known]
    return mixture, known, y


def _noisy_observation_posterior(
    mixture: GaussianMixture, known: torch.Tensor, y: torch.Tensor, noise_std: float
) -> GaussianMixture:
    """p(x_u | y) for y = x_k + σ_y n: condition the joint of (x_u, x_k + σ_y n), Σ_yy = Σ_kk + σ_y² I."""
    order = torch.cat([(~known).nonzero().reshape(-1), known.nonzero().reshape(-1)])
    cov = mixture.covariances[:, order][:, :, order].clone()
    k = int(known.sum())
    cov[:, -k:, -k:] += noise_std**2 * torch.eye(k, dtype=F64)
    joint = GaussianMixture(mixture.weights, mixture.means[:, order], cov)
    return joint.condition(torch.arange(len(order)) >= len(order) - k, y)


def digits_guidance_table(per_class: int = 100) -> None:
    from sdekit.app.models import digits, fd

    sde, score = digits.load()
    noisy, clean = digits.load_noisy_classifier(), digits.load_classifier()
    _, labels = digits.load_data()
    real_features = fd.real_features()
    target = torch.arange(10).repeat_interleave(per_class)
    print("| scale w | NFE | recognised (all) | worst class | FD-digits per class (mean; min–max) | real FD | s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for scale in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        start = time.perf_counter()
        guide = ClassifierGuidance(score, noisy, target, scale=scale)
        x, info = sdekit.sample(sde, guide, (len(target), 1, 8, 8), method="adaptive", return_info=True,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
        x = digits.from_uint8(digits.to_uint8(x))
        with torch.no_grad():
            predicted = clean(x).argmax(1)
        hits = (predicted == target).double().reshape(10, per_class).mean(1)
        features = fd.features(x)
        distances, floors = [], []
        for k in range(10):
            own = real_features[(labels == k).numpy()]
            half = len(own) // 2
            m = min(per_class, half)
            distances.append(fd.frechet_distance(features[target.numpy() == k][:m], own[half:]))
            floors.append(fd.frechet_distance(own[:m], own[half:]))
        d, f = torch.tensor(distances), torch.tensor(floors)
        print(
            f"| {scale:g} | {info.nfe} | {100 * float(hits.mean()):.1f} % | {100 * float(hits.min()):.0f} % "
            f"(class {int(hits.argmin())}) | {float(d.mean()):.1f}; {float(d.min()):.1f}–{float(d.max()):.1f} | "
            f"{float(f.mean()):.1f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


def digits_inpainting_table(n: int = 512) -> None:
    from sdekit.app.models import digits, fd

    sde, score = digits.load()
    clean = digits.load_classifier()
    real, labels = digits.load_data()
    originals = digits.from_uint8(digits.to_uint8(real[:n]))
    known = (torch.arange(8) < 4)[None, None, :, None].expand(1, 1, 8, 8)
    reference = fd.frechet_distance(fd.features(originals), fd.real_features())
    print(f"bottom half of the first {n} digits redrawn; FD of the {n} originals themselves: {reference:.2f}\n")
    print("| method | options | NFE | labels agree | RMSE redrawn | FD-digits | s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, options, r, j in [
        ("replacement, adaptive", {"method": "adaptive"}, 1, 1),
        ("replacement, ancestral", {"method": "ancestral", "steps": 1000}, 1, 1),
        ("replacement, dpmpp_2m_sde", {"method": "dpmpp_2m_sde", "steps": 100}, 1, 1),
        ("RePaint, ancestral", {"method": "ancestral", "steps": 100}, 5, 10),
        ("RePaint, ancestral", {"method": "ancestral", "steps": 100}, 10, 10),
    ]:
        start = time.perf_counter()
        constraint = Imputation(sde, real[:n], known, resample=r, jump_length=j)
        x, info = sdekit.sample(sde, score, (n, 1, 8, 8), constraint=constraint, return_info=True,
                                generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
        x = digits.from_uint8(digits.to_uint8(x))
        assert torch.equal(x[:, :, :4], originals[:, :, :4])
        with torch.no_grad():
            agree = float((clean(x).argmax(1) == labels[:n]).float().mean())
        rmse = float((x - originals)[:, :, 4:].pow(2).mean().sqrt())
        distance = fd.frechet_distance(fd.features(x), fd.real_features())
        shown = {k: v for k, v in options.items() if k != "method"} | (
            {"resample": r, "jump_length": j} if r > 1 else {}
        )
        print(
            f"| {name} | {shown} | {info.nfe} | {100 * agree:.1f} % | {rmse:.3f} | {distance:.2f} | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


def main() -> None:
    torch.set_num_threads(2)
    chosen = set(sys.argv[1:]) or {"oracle", "digits-guidance", "digits-inpainting"}
    for name, table in [
        ("oracle", oracle_table),
        ("digits-guidance", digits_guidance_table),
        ("digits-inpainting", digits_inpainting_table),
    ]:
        if name in chosen:
            print(f"\n## {name}\n", flush=True)
            table()


if __name__ == "__main__":
    main()
