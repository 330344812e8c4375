"""Golden outputs: every sampler on every built-in SDE family, recorded before a refactoring.

A refactoring of the solve loop, the steppers or the layout must leave behaviour unchanged.
Each case here is one sampler (every predictor × corrector of ``pc_sample``, every method of
``sample`` and ``ode_sample``, the likelihood) on VP, sub-VP, VE, discrete VP and VP seen through the generic
``SDE`` interface (no Gaussian kernel: the general paths) at a fixed
seed, a small batch, float64, with a smooth non-linear score; its samples and its counts
(NFE, steps, rejected steps) were recorded into ``golden/samplers.pt`` by

    python tests/test_golden.py --record

and the test compares against them: counts exactly, samples to 1e-10 relative (float64
reductions may be reordered by a different thread count; anything larger is a change of
behaviour). ``python tests/test_golden.py --check`` says how many cases agree bit for bit.
Re-record only for an intended change of behaviour, and say so in the commit.

History: the one-code-path steppers (``solvers/coefficients.py``) left every case on a LinearSDE
bit for bit; Euler–Maruyama and reverse diffusion on the generic VP (8 cases) moved by at most
9e-15 relative, because the general step now expands x − h(f − g² s) as x − h f + h g² s.
The heun_euler pair's cases were added when it was (``--record-missing``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

import sdekit
from sdekit import VESDE, VPSDE, SubVPSDE, linear_betas
from sdekit.sampling import ode_methods, sde_methods
from sdekit.solvers import CORRECTORS, PREDICTORS
from sdekit.solvers.adaptive_ode import TABLEAUS

GOLDEN = Path(__file__).parent / "golden" / "samplers.pt"
SHAPE = (3, 2)
STEPS = 6
SEED = 20261202
RTOL = 1e-10


class GenericVP(sdekit.SDE):
    """VP through the generic SDE interface only (drift, diffusion, prior): the paths for SDEs without a kernel."""

    def __init__(self) -> None:
        self.inner = VPSDE()

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.inner.drift(x, t)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return self.inner.diffusion(x, t)

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner.marginal(x0, t)

    def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32):  # type: ignore[no-untyped-def]
        return self.inner.prior_sample(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: Tensor) -> Tensor:
        return self.inner.prior_logp(z)


SDES: dict[str, Callable[[], sdekit.SDE]] = {
    "vp": lambda: VPSDE(),
    "subvp": lambda: SubVPSDE(),
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=5.0),
    "discrete_vp": lambda: VPSDE.from_betas(linear_betas(100)),
    "generic_vp": GenericVP,
}


def make_score(sde: sdekit.SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """The score of N(0.5, 0.25 I) data under ``sde`` plus a smooth non-linear term (so no method is exact)."""
    linear = sde.inner if isinstance(sde, GenericVP) else sde
    assert isinstance(linear, sdekit.LinearSDE)

    def score(x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = linear.kernel(t.double())
        alpha, sigma = alpha.to(x.dtype)[:, None], sigma.to(x.dtype)[:, None]
        return -(x - 0.5 * alpha) / (0.25 * alpha**2 + sigma**2) + 0.05 * torch.tanh(x) * t[:, None]

    return score


def _run(kind: str, method: str, sde: sdekit.SDE) -> tuple[Tensor, list[int]]:
    generator = torch.Generator().manual_seed(SEED)
    denoise = isinstance(sde, sdekit.LinearSDE)  # Tweedie's formula needs the Gaussian kernel
    common = {"shape": SHAPE, "generator": generator, "dtype": torch.float64, "return_info": True, "denoise": denoise}
    score = make_score(sde)
    if kind == "pc":
        predictor, corrector = method.split("+")
        x, info = sdekit.pc_sample(sde, score, steps=STEPS, predictor=predictor, corrector=corrector, **common)
    elif kind == "sde":  # the adaptive methods choose their own steps
        steps = {} if method == "adaptive" else {"steps": STEPS}
        x, info = sdekit.sample(sde, score, method=method, **steps, **common)
    elif kind == "ode":
        steps = {} if method in TABLEAUS else {"steps": STEPS}
        x, info = sdekit.ode_sample(sde, score, method=method, **steps, **common)
    else:
        data = 0.5 + 0.5 * torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        x, info = sdekit.log_likelihood(sde, score, data, divergence=method, generator=generator, return_info=True)
        return x, [info.nfe]
    return x, [info.nfe, info.steps, info.rejected]


def cases() -> list[tuple[str, str, str]]:
    """(kind, method, sde) for every case, in a fixed order."""
    methods = [("pc", f"{p}+{c}") for p in PREDICTORS.names() for c in CORRECTORS.names()]
    methods += [("sde", m) for m in sde_methods()]
    methods += [("ode", m) for m in ode_methods()]
    methods += [("likelihood", d) for d in ("exact", "hutchinson_rademacher")]
    return [(kind, method, name) for kind, method in methods for name in SDES]


def key(case: tuple[str, str, str]) -> str:
    return "/".join(case)


def compute(case: tuple[str, str, str]) -> tuple[Tensor, list[int]] | str:
    """The case's (samples, counts), or the type and message of the error it raises."""
    kind, method, name = case
    try:
        return _run(kind, method, SDES[name]())
    except (TypeError, ValueError) as error:  # a method that refuses this SDE refuses it the same way after
        return f"{type(error).__name__}: {error}"


@pytest.fixture(scope="module")
def golden() -> dict[str, object]:
    return torch.load(GOLDEN, weights_only=True)


@pytest.mark.parametrize("case", cases(), ids=key)
def test_sampler_output_unchanged(case: tuple[str, str, str], golden: dict[str, object]) -> None:
    expected = golden[key(case)]
    got = compute(case)
    if isinstance(expected, str):
        assert got == expected
        return
    assert not isinstance(got, str), got
    (x, counts), (x_expected, counts_expected) = got, expected
    assert counts == counts_expected
    torch.testing.assert_close(x, x_expected, rtol=RTOL, atol=0.0)


def test_every_case_is_recorded(golden: dict[str, object]) -> None:
    """A new sampler must be added to the golden file (record it), not skipped silently."""
    assert sorted(golden) == sorted(key(case) for case in cases())


def _main(argv: list[str]) -> None:
    if argv == ["--record"]:
        GOLDEN.parent.mkdir(exist_ok=True)
        torch.save({key(case): compute(case) for case in cases()}, GOLDEN)
        print(f"recorded {len(cases())} cases into {GOLDEN}")
    elif argv == ["--record-missing"]:  # a new sampler: record its cases only, never re-record the others
        golden = torch.load(GOLDEN, weights_only=True)
        missing = [case for case in cases() if key(case) not in golden]
        golden.update({key(case): compute(case) for case in missing})
        torch.save(golden, GOLDEN)
        print(f"recorded {len(missing)} new cases: {[key(case) for case in missing]}")
    elif argv == ["--check"]:
        golden = torch.load(GOLDEN, weights_only=True)
        identical, close, changed = 0, 0, []
        for case in cases():
            got, expected = compute(case), golden.get(key(case))
            if isinstance(got, str) or isinstance(expected, str) or expected is None:
                identical += got == expected
                changed += [] if got == expected else [key(case)]
            elif got[1] == expected[1] and torch.equal(got[0], expected[0]):
                identical += 1
            elif got[1] == expected[1] and torch.allclose(got[0], expected[0], rtol=RTOL, atol=0.0):
                close += 1
                print(f"close, not identical: {key(case)}")
            else:
                changed.append(key(case))
        print(f"{identical} bit for bit, {close} within {RTOL:g} relative, {len(changed)} changed: {changed}")
    else:
        raise SystemExit("usage: python tests/test_golden.py --record | --record-missing | --check")


if __name__ == "__main__":
    _main(sys.argv[1:])
