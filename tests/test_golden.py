"""Golden outputs: every sampler on every built-in SDE family, recorded before a refactoring.

A refactoring of the solve loop, the steppers or the layout must leave behaviour unchanged.
Each case here is one sampler (every predictor × corrector of ``pc_sample``, every method of
``sample`` and ``ode_sample``, the likelihood) on VP, sub-VP, VE, discrete VP and VP seen through the generic
``SDE`` interface (no Gaussian kernel: the general paths) at a fixed
seed, a small batch, float64, with a smooth non-linear score; its samples and its counts
(NFE, steps, rejected steps) were recorded into ``golden/samplers.pt`` by

    python tests/test_golden.py --record

and the test compares against them: counts exactly, samples to 1e-10 relative (float64
reductions may be reordered by a different thread count), or, for the few cases whose output
is ill-conditioned, to ``MARGIN`` times their measured sensitivity (below). Anything larger is
a change of behaviour. ``python tests/test_golden.py --check`` says how many cases agree bit
for bit. Re-record only for an intended change of behaviour, and say so in the commit.

**Sensitivity.** The last bits of float64 exp, log and tanh are not the same on every machine:
torch sends contiguous tensors to MKL's vector maths, whose code path depends on the processor
(the goldens agree bit for bit on the AMD EPYC they were recorded on and differ in the last bit
of exp/tanh on an Intel Xeon). Most cases pass such a difference through unchanged, but a few
amplify it: an adaptive controller's error ratio is the difference of two nearly equal
solutions, so each accepted step size carries the roundoff magnified, and the factor compounds
over the steps (on ``sde/adaptive/ve`` a 2^-52 relative change of the score moves the step sizes
by 2e-14 at the first step, 4e-12 by the twentieth and the samples by 1e-4); dopri5 on the
discrete VP integrates a piecewise-constant beta. ``--record-sensitivity`` measures each case's
largest relative change when the score is multiplied by 1 + k 2^-52 (k = ±1, ±2, ±4, ±8) and
writes those above 1e-10 into ``golden/sensitivity.json``; the test allows ``MARGIN`` times that,
and still requires the counts (NFE, steps, rejected steps) to be equal. On the Intel machine
the five cases above 1e-8 moved by 0.09-1.3 times their recorded sensitivity.

History: the one-code-path steppers (``solvers/coefficients.py``) left every case on a LinearSDE
bit for bit; Euler–Maruyama and reverse diffusion on the generic VP (8 cases) moved by at most
9e-15 relative, because the general step now expands x − h(f − g² s) as x − h f + h g² s.
The heun_euler pair's cases were added when it was (``--record-missing``), and on 2026-12-04 the
unipc and edm_stochastic methods' and the rectified flow's and EDM's families' cases. On the same day
torchsde's 15 cases were re-recorded: its fixed step became (T − eps)/steps·(1 + 1e-10), which moved
them by ≤ 2e-9 relative.
The rectified flow runs with T = 0.98: at its default 0.999 a last-bit change of the score changed the
adaptive SDE solver's step counts (a borderline acceptance), which no machine-independent golden can hold.
Re-recorded on 2026-12-04 when every fixed-grid method's default grid became the log-SNR grid
(it was uniform in t for all but the exponential integrators): the cases on a LinearSDE with a
fixed-grid method changed by design; the adaptive cases, the likelihood and the generic VP did not
(its default stays uniform), except that DPM-Solver++ on the generic VP is now refused by the method
(it needs a Gaussian kernel) before the grid is built, so its recorded error message names the method.
"""

from __future__ import annotations

import json
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
SENSITIVITY = GOLDEN.with_name("sensitivity.json")
SHAPE = (3, 2)
STEPS = 6
SEED = 20261202
RTOL = 1e-10
#: A case may move by this many times its measured sensitivity to a last-bit change of the score.
MARGIN = 10.0
#: The perturbations of the sensitivity measurement: the score times 1 + k 2^-52.
PERTURBATIONS = (-8, -4, -2, -1, 1, 2, 4, 8)


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
    "rectified_flow": lambda: sdekit.RectifiedFlowSDE(T=0.98),  # at 0.999 the adaptive SDE case is borderline
    "edm": lambda: sdekit.EDMSDE(sigma_min=0.002, sigma_max=5.0),
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


def _run(kind: str, method: str, sde: sdekit.SDE, perturbation: float = 0.0) -> tuple[Tensor, list[int]]:
    generator = torch.Generator().manual_seed(SEED)
    denoise = isinstance(sde, sdekit.LinearSDE)  # Tweedie's formula needs the Gaussian kernel
    common = {"shape": SHAPE, "generator": generator, "dtype": torch.float64, "return_info": True, "denoise": denoise}
    exact = make_score(sde)
    score = exact if perturbation == 0.0 else (lambda x, t: exact(x, t) * (1.0 + perturbation))
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


def compute(case: tuple[str, str, str], perturbation: float = 0.0) -> tuple[Tensor, list[int]] | str:
    """The case's (samples, counts), or the type and message of the error it raises.

    ``perturbation``: the score is multiplied by 1 + perturbation (the sensitivity measurement).
    """
    kind, method, name = case
    try:
        return _run(kind, method, SDES[name](), perturbation)
    except (TypeError, ValueError) as error:  # a method that refuses this SDE refuses it the same way after
        return f"{type(error).__name__}: {error}"


def relative_change(x: Tensor, reference: Tensor) -> float:
    """The largest elementwise relative difference (the quantity ``assert_close``'s rtol bounds)."""
    return float(((x - reference).abs() / reference.abs()).max())


def sensitivity(case: tuple[str, str, str]) -> float:
    """The largest relative change of the case's samples under last-bit perturbations of the score."""
    reference = compute(case)
    if isinstance(reference, str):
        return 0.0
    changes = []
    for k in PERTURBATIONS:
        got = compute(case, k * 2.0**-52)
        assert not isinstance(got, str), got
        assert got[1] == reference[1], f"{key(case)}: a last-bit change of the score changed the counts"
        changes.append(relative_change(got[0], reference[0]))
    return max(changes)


def tolerance(case: tuple[str, str, str], sensitivities: dict[str, float]) -> float:
    """The relative tolerance of a case: RTOL, or MARGIN times its recorded sensitivity if larger."""
    return max(RTOL, MARGIN * sensitivities.get(key(case), 0.0))


@pytest.fixture(scope="module")
def golden() -> dict[str, object]:
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def sensitivities() -> dict[str, float]:
    return json.loads(SENSITIVITY.read_text())


@pytest.mark.parametrize("case", cases(), ids=key)
def test_sampler_output_unchanged(
    case: tuple[str, str, str], golden: dict[str, object], sensitivities: dict[str, float]
) -> None:
    expected = golden[key(case)]
    got = compute(case)
    if isinstance(expected, str):
        assert got == expected
        return
    assert not isinstance(got, str), got
    (x, counts), (x_expected, counts_expected) = got, expected
    assert counts == counts_expected
    torch.testing.assert_close(x, x_expected, rtol=tolerance(case, sensitivities), atol=0.0)


def test_every_case_is_recorded(golden: dict[str, object], sensitivities: dict[str, float]) -> None:
    """A new sampler must be added to the golden file (record it), not skipped silently."""
    assert sorted(golden) == sorted(key(case) for case in cases())
    assert set(sensitivities) <= set(golden)


def test_widened_cases_are_few_and_measured(sensitivities: dict[str, float]) -> None:
    """The sensitivity file widens only ill-conditioned cases, each by a measured amount.

    If a change makes many more cases sensitive, that is itself a change of behaviour to look at.
    """
    assert len(sensitivities) <= 12
    assert all(RTOL < value < 1e-3 for value in sensitivities.values())


def test_sensitivity_is_recorded_as_measured(sensitivities: dict[str, float]) -> None:
    """The recorded sensitivity of the worst case is what the perturbation measures now (within 4x)."""
    worst = max(sensitivities, key=sensitivities.__getitem__)
    kind, method, name = worst.split("/")
    measured = sensitivity((kind, method, name))
    assert sensitivities[worst] / 4 < measured < 4 * sensitivities[worst]


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
    elif argv == ["--record-sensitivity"]:  # the measurement only: the recorded samples are not touched
        measured = {key(case): sensitivity(case) for case in cases()}
        above = {name: float(f"{value:.3g}") for name, value in measured.items() if value > RTOL}
        temporary = SENSITIVITY.with_suffix(".tmp")
        temporary.write_text(json.dumps(dict(sorted(above.items())), indent=1) + "\n")
        temporary.replace(SENSITIVITY)
        print(f"{len(above)} cases above {RTOL:g}: {above}")
    elif argv == ["--check"]:
        golden = torch.load(GOLDEN, weights_only=True)
        widened = json.loads(SENSITIVITY.read_text())
        identical, close, changed = 0, 0, []
        for case in cases():
            got, expected = compute(case), golden.get(key(case))
            if isinstance(got, str) or isinstance(expected, str) or expected is None:
                identical += got == expected
                changed += [] if got == expected else [key(case)]
            elif got[1] == expected[1] and torch.equal(got[0], expected[0]):
                identical += 1
            elif got[1] == expected[1] and torch.allclose(got[0], expected[0], rtol=tolerance(case, widened), atol=0.0):
                close += 1
                print(f"close, not identical: {key(case)} ({relative_change(got[0], expected[0]):.2g} relative)")
            else:
                changed.append(key(case))
        print(f"{identical} bit for bit, {close} within their tolerance, {len(changed)} changed: {changed}")
    else:
        usage = "--record | --record-missing | --record-sensitivity | --check"
        raise SystemExit(f"usage: python tests/test_golden.py {usage}")


if __name__ == "__main__":
    _main(sys.argv[1:])
