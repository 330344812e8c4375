"""Command line: ``sdekit sample | eval | info | demo | train`` (also ``python -m sdekit``).

``sdekit`` with no command runs the main job, ``sdekit sample`` with its defaults: 256
digits from the embedded UNet with the adaptive SDE sampler into ``runs/digits``.

    sdekit sample --model digits --method adaptive --num-samples 256 --seed 0 --out runs/digits
    torchrun --nproc-per-node 2 -m sdekit sample --num-samples 4096 --out runs/big   # chunks over ranks
    sdekit eval runs/digits                                                          # FD-digits / mixture
    sdekit info                                                              # models, samplers, adapters
    sdekit train --data gmm2d --loss ssm --method pc                        # train, resumable, then sample

``--model`` is a built-in name or ``module:callable``; the latter *imports and runs that
code* (it must return ``(sde, score)``), so only name modules you trust. Runs are
chunked, resumable and atomic (:mod:`sdekit.app.run`): rerunning a command finishes what is
missing. User errors print one line and exit with status 2, without a traceback; faults of
the machine (a full disk, out of memory) print one line and exit with status 1; Ctrl-C exits
with 130. Every option is spelled so that torchrun's own parser passes it on untouched (its
prefix matching refuses ``--num``, which could be its ``--numa-binding``: write ``--num-samples``).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from sdekit import __version__
from sdekit.app import MissingRequirementError, require
from sdekit.app.conditioning import MASKS, Condition, ConditionError, digits_quality, inpainting_panel, mask_of
from sdekit.app.host_memory import keep_freed_memory
from sdekit.checks import EstimateError, ScoreError, check_choice, check_fits
from sdekit.grids import GRIDS
from sdekit.sampling import SampleInfo, ode_methods, ode_sample, pc_sample, sample, sde_methods
from sdekit.sde import VPSDE
from sdekit.solvers import CORRECTORS, PREDICTORS
from sdekit.solvers.adaptive_ode import BACKENDS
from sdekit.solvers.catalog import ode_method, sde_method
from sdekit.solvers.grid_stepper import GridStepper
from sdekit.solvers.loop import StepLimitError
from sdekit.testing import GaussianMixture, evaluate

Sampler = Callable[..., object]
#: ``--class`` without ``--guidance``: on the digits model w = 2 gave 98.3 % of 1000 samples (100 per
#: class, every class >= 96 %) the requested class and the lowest FD-digits per class; w = 1 gave 89 %
#: (docs/guidance.md, ``python benchmarks/conditioning_tables.py digits-guidance``).
DEFAULT_GUIDANCE = 2.0
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: CLI flags forwarded to the sampler when given (None = the sampler's default). Where a flag names a
#: registered choice, its help lists the registry's names (:func:`flag_choices`), never a fixed list.
SAMPLER_FLAGS: dict[str, tuple[type, str]] = {
    "steps": (int, "number of steps of fixed-grid methods"),
    "rtol": (float, "relative tolerance of adaptive methods"),
    "atol": (float, "absolute tolerance of adaptive methods"),
    "predictor": (str, "predictor of --method pc"),
    "corrector": (str, "corrector of --method pc"),
    "snr": (float, "signal-to-noise ratio of the Langevin corrector (default 0.16)"),
    "corrector_steps": (int, "corrector moves per step of --method pc"),
    "eps": (float, "end time (default 1e-3 for VP, 1e-5 for VE)"),
    "grid": (str, "time grid of fixed-grid methods"),
    "backend": (str, "adaptive ODE backend"),
}


def flag_choices() -> dict[str, list[str]]:
    """The valid values of the flags that name a registered choice, from the registries themselves."""
    return {
        "method": ["pc", *sde_methods(), *ode_methods()],
        "predictor": PREDICTORS.names(),
        "corrector": CORRECTORS.names(),
        "grid": sorted(GRIDS),
        "backend": list(BACKENDS),
    }


def _help(name: str, text: str, choices: dict[str, list[str]]) -> str:
    return f"{text}: {', '.join(choices[name])}" if name in choices else text


class UserError(Exception):
    """An error in what the user asked for: reported in one line, exit status 2."""


# --------------------------------------------------------------------------- parsing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sdekit {__version__}")
    commands = parser.add_subparsers(dest="command")
    _sample_parser(commands.add_parser("sample", help="sample a model into OUT (chunked, resumable)"))
    eval_parser = commands.add_parser("eval", help="print quality figures of a finished run")
    eval_parser.add_argument("run", nargs="?", type=Path, default=None, help="the OUT folder of a sample run")
    eval_parser.add_argument("--run", dest="run_option", type=Path, default=None, help="the same, as an option")
    commands.add_parser("info", help="list models, samplers and adapters")
    _train_parser(commands.add_parser("train", help="train a small score model into OUT (resumable), then sample it"))
    demo_parser = commands.add_parser("demo", help="sample the analytic 2-D mixture and print quality figures")
    demo_parser.add_argument(
        "-n", "--num-samples", dest="num", type=int, default=8192, help="number of samples (default 8192)"
    )
    demo_parser.add_argument("--steps", type=int, default=1000, help="steps of the SDE samplers (default 1000)")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    return parser


def _sample_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="digits", help="built-in model (see `sdekit info`) or module:callable (runs user code)"
    )
    choices = flag_choices()
    p.add_argument(
        "--method", default=None, help=_help("method", "sampler (default adaptive; ancestral with --inpaint)", choices)
    )
    p.add_argument("-n", "--num-samples", dest="num", type=int, default=256, help="number of samples (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed; chunk k uses a generator seeded by (seed, k)")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>)")
    p.add_argument(
        "--chunk",
        type=int,
        default=256,
        help="samples per chunk (default 256); results depend on it unless --per-sample-seeds",
    )
    p.add_argument(
        "--per-sample-seeds",
        action="store_true",
        help="one generator per sample, seeded by (seed, index): samples independent of --chunk, --procs",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="state dtype (default float32)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1); CPU bits depend on it")
    p.add_argument("--shape", default=None, help="event shape of a module:callable model, e.g. 2 or 3,32,32")
    p.add_argument("--weights", default=None, help="digits UNet weights: .safetensors, or .pt (weights_only=True)")
    p.add_argument(
        "--procs", type=int, default=1, help="processes on this machine (default 1): launches them itself, as torchrun"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the quality figures at the end")
    p.add_argument("--class", dest="label", type=int, default=None, help="sample this class (classifier guidance)")
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-guidance scale w >= 0 with --class (default 2)"
    )
    p.add_argument(
        "--inpaint", default=None, help=f"complete the real images with this region redrawn: {', '.join(MASKS)}"
    )
    p.add_argument("--resample", type=int, default=1, help="RePaint passes per block with --inpaint (default 1)")
    p.add_argument("--jump-length", type=int, default=1, help="RePaint steps per block with --inpaint (default 1)")
    _sampler_flags(p, choices)


def _sampler_flags(p: argparse.ArgumentParser, choices: dict[str, list[str]]) -> None:
    for name, (kind, help_text) in SAMPLER_FLAGS.items():
        flag = f"--{name.replace('_', '-')}"
        p.add_argument(flag, dest=name, type=kind, default=None, help=_help(name, help_text, choices))
    p.add_argument(
        "--no-denoise", dest="denoise", action="store_false", default=None, help="skip the final Tweedie step"
    )
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="any other sampler option")


def _train_parser(p: argparse.ArgumentParser) -> None:
    from sdekit.app.train import LOSSES

    p.add_argument("--data", default="gmm2d", help=f"training data: {', '.join(TRAIN_DATA)} (default gmm2d)")
    p.add_argument("--loss", default="dsm", help=f"training loss: {', '.join(LOSSES)} (default dsm)")
    p.add_argument("--train-steps", type=int, default=8000, help="optimiser steps in total (default 8000)")
    p.add_argument("--batch-size", type=int, default=512, help="training batch size (default 512)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine-decayed to lr/20 (default 2e-3)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="decay of the EMA weights (default 0.999)")
    p.add_argument("--levels", type=int, default=32, help="noise levels of smld, ssm and ism (default 32)")
    p.add_argument("--sigma-max", type=float, default=None, help="largest level (default: largest data distance)")
    p.add_argument("--sigma-min", type=float, default=0.01, help="smallest level (default 0.01)")
    p.add_argument("--projections", type=int, default=1, help="random projections per sample of ssm, ism in > 16-D")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, batches and noise (default 0)")
    p.add_argument("--out", default=None, help="output folder (default runs/train-<data>-<loss>)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1); the weights' bits depend on it")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-n", "--num-samples", dest="num", type=int, default=4096, help="samples at the end (0: none)")
    p.add_argument("--method", default="euler_maruyama", help="sampler of the final samples (default euler_maruyama)")
    _sampler_flags(p, flag_choices())


def _normalise(argv: Sequence[str]) -> list[str]:
    """No command (or only options) means ``sample``: ``sdekit`` alone is the main job."""
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["sample", *argv]
    return argv


# --------------------------------------------------------------------------- sampling


def _sampler(method: str) -> tuple[Sampler, dict[str, Any]]:
    """The sampler function and fixed options that ``--method`` names."""
    sde_names, ode_names = sde_methods(), ode_methods()
    check_choice("method", method, ["pc", *sde_names, *ode_names])
    if method == "pc":
        return pc_sample, {}
    if method in sde_names:
        return sample, {"method": method}
    return ode_sample, {"method": method}


def _fixed_grid(method: str) -> bool:
    """Whether ``--method`` steps on a time grid (and so takes a default grid)."""
    if method == "pc":
        return True
    try:
        built = sde_method(method, {}) if method in sde_methods() else ode_method(method, {})
    except (TypeError, ValueError):
        return False
    return isinstance(built, GridStepper)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = {name: getattr(args, name) for name in SAMPLER_FLAGS if getattr(args, name) is not None}
    if args.denoise is not None:
        options["denoise"] = args.denoise
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--option {item!r}: expected KEY=VALUE, e.g. --option rtol=0.02")
        if key in RESERVED_OPTIONS:
            raise UserError(f"--option {key}: {RESERVED_OPTIONS[key]}")
        if key in options:
            flag = "--no-denoise" if key == "denoise" else f"--{key.replace('_', '-')}"
            raise UserError(f"--option {key}: given twice (also as {flag}); give it once")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


#: Sampler arguments that --option must not set, and why.
RESERVED_OPTIONS = {
    "denoise": "use --no-denoise",
    "return_info": "the command records the run's information itself",
    "callback": "not available from the command line",
    "progress": "use --quiet",
    "generator": "the command seeds every chunk from --seed",
    "device": "use --device",
    "dtype": "use --dtype",
    "x_T": "not available from the command line",
    "shape": "use --shape (for a module:callable model)",
}


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UserError(f"--shape {text!r}: expected positive ints separated by commas, e.g. 2 or 3,32,32")
    return shape


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name!r}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name!r}: MPS (Apple GPU) is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r}: sdekit samples on cpu, cuda or mps, not on {device.type}")
    return name


#: A lower bound on the copies of a chunk's state a sampler holds at once (state, score, noise,
#: proposals and error estimates of the adaptive methods); the network's activations come on top.
STATE_COPIES = 8


def _check_resources(out: Path, config: Any, model: Any, device: str) -> None:
    """Refuse up front a run whose output cannot fit on the disk, or whose chunk cannot fit in memory."""
    from sdekit.app import run

    one = torch.zeros((1, *config.shape), dtype=DTYPES[config.dtype])
    run.check_space(out, config, _storage(one, model.kind).itemsize)  # bytes a value takes in samples.npz
    need = config.chunk * one.numel() * one.element_size() * STATE_COPIES
    check_fits(f"--chunk {config.chunk}", need, "use a smaller --chunk", torch.device(device))


def cmd_sample(args: argparse.Namespace) -> int:
    """``sdekit sample``: compute missing chunks (this rank's share), then merge, draw and evaluate on rank 0."""
    from sdekit.app import distributed, run
    from sdekit.app.models import get_model

    if args.num < 1 or args.chunk < 1:
        raise UserError(f"--num-samples and --chunk must be >= 1, got --num-samples {args.num} --chunk {args.chunk}")
    if args.seed < 0 or args.threads < 1:
        raise UserError(f"--seed must be >= 0 and --threads >= 1, got --seed {args.seed} --threads {args.threads}")
    try:
        condition = Condition(args.label, args.guidance, args.inpaint, args.resample, args.jump_length)
    except ConditionError as error:
        raise UserError(str(error)) from error
    if condition.label is not None and args.guidance is None:
        condition = Condition(args.label, DEFAULT_GUIDANCE)
    if args.method is None:
        args.method = "ancestral" if condition.inpaint is not None else "adaptive"
    try:
        sampler, fixed = _sampler(args.method)
    except ValueError as error:
        raise UserError(str(error)) from error
    options = _options(args)
    device = _device(args.device)
    model = get_model(args.model, _shape(args.shape))
    try:
        condition.check(model, args.num)
    except ConditionError as error:
        raise UserError(str(error)) from error
    if args.out is not None and not args.out.strip():
        raise UserError("--out '': give the output folder a name, e.g. --out runs/digits (or leave --out out)")
    out = Path(args.out) if args.out is not None else Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name)
    config = run.RunConfig(
        model=args.model, method=args.method, num=args.num, chunk=args.chunk, seed=args.seed,
        shape=list(model.event_shape), dtype=args.dtype, device=device.split(":")[0], options=options,
        weights=args.weights, weights_sha256=model.weights_digest(args.weights), threads=args.threads,
        sdekit_version=__version__, condition=condition.to_json(), seeds="sample" if args.per_sample_seeds else "chunk",
        default_grid="log_snr",
    )  # fmt: skip
    config = run.with_stored_default_grid(out, config)
    if config.default_grid == "uniform" and "grid" not in options and _fixed_grid(args.method):
        options_for_call = {**options, "grid": "uniform"}  # a run started before the log-SNR default
    else:
        options_for_call = options
    if args.procs < 1:
        raise UserError(f"--procs must be >= 1, got {args.procs}")
    if args.procs > 1 and "WORLD_SIZE" not in os.environ:  # validated above: launch the workers
        return _launch(args.procs, _without_procs(args.argv))
    torch.set_num_threads(args.threads)  # CPU reductions round differently with other thread counts
    ctx = distributed.init(device)
    try:
        with ExitStack() as stack:
            if ctx.is_main:  # rank 0 holds OUT for all ranks
                stack.enter_context(run.lock(out))
            run.prepare_out(out, config, write=ctx.is_main)
            if ctx.is_main:
                _check_resources(out, config, model, device)
            distributed.barrier(ctx)
            stack.enter_context(run.hold_rank(out))  # every rank, until it is done writing
            torch_device = distributed.device_for(ctx, device)
            sde, score = model.build(torch_device, DTYPES[args.dtype], args.weights)
            show = not args.quiet and ctx.is_main

            def sample_chunk(k: int, n: int, generator: torch.Generator) -> Tensor:
                chunk_score, extra = condition.chunk_inputs(
                    model, sde, score, k * config.chunk, n, torch_device, DTYPES[args.dtype]
                )
                x = sampler(sde, chunk_score, (n, *model.event_shape), generator=generator, device=torch_device,
                            dtype=DTYPES[args.dtype], progress=show, **fixed, **options_for_call, **extra)  # fmt: skip
                return cast(Tensor, x)

            start = time.perf_counter()
            _run_all(run, ctx, out, config, sample_chunk, torch_device, show)
            distributed.barrier(ctx)
            if ctx.is_main:
                _finish(out, config, model, time.perf_counter() - start, args.evaluate)
    finally:
        distributed.shutdown(ctx)
    return 0


#: Set for the workers that ``--procs`` launches: the folder where each leaves its final line.
LAUNCHED_BY_SDEKIT = "SDEKIT_LAUNCH_REPORTS"


def _without_procs(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--procs N`` (or ``--procs=N``) removed: what each worker runs."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--procs":
            skip = True
        elif not item.startswith("--procs="):
            kept.append(item)
    return kept


def _launch(procs: int, argv: list[str]) -> int:
    """Run ``python -m sdekit ARGV`` in ``procs`` workers through torch.distributed's launcher (torchrun's).

    The same as ``torchrun --standalone --nproc-per-node PROCS -m sdekit ARGV``, except that a
    worker's failure ends in its own one-line message and exit status, not in torchrun's report.
    """
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the workers speak for themselves
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=procs, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sdekit-launch-") as reports:
        os.environ[LAUNCHED_BY_SDEKIT] = reports  # inherited by the workers: where they leave their last line
        try:
            elastic_launch(config, sys.executable)("-m", "sdekit", *argv)
        except ChildFailedError as error:
            # ranks stopped by a peer's failure exit 1 (silently), so prefer another status
            failures = [error.failures[rank] for rank in sorted(error.failures)]
            if not _reports(reports):  # nobody said why: a worker killed by a signal (the OOM killer's SIGKILL)
                for rank, failure in zip(sorted(error.failures), failures, strict=True):
                    if failure.exitcode < 0:
                        print(f"sdekit: error: worker rank {rank} was killed by signal {-failure.exitcode} "
                              "(out of memory?); rerun the same command to resume", file=sys.stderr)  # fmt: skip
            return next((f.exitcode for f in failures if f.exitcode > 1), 1)
        except SignalException:  # Ctrl-C (or SIGTERM) reached the launcher; the workers were stopped
            if not _reports(reports):
                print("sdekit: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        finally:
            del os.environ[LAUNCHED_BY_SDEKIT]
            for line in dict.fromkeys(_reports(reports)):  # each distinct line once, in rank order
                print(line, file=sys.stderr)
    return 0


def _reports(folder: str) -> list[str]:
    return [line for path in sorted(Path(folder).iterdir()) for line in path.read_text().splitlines()]


def _run_all(run: Any, ctx: Any, out: Path, config: Any, sample_chunk: Any, device: torch.device, show: bool) -> None:
    from tqdm.auto import tqdm

    from sdekit.app import distributed

    mine = distributed.my_chunks(ctx, config.num_chunks)
    bar = tqdm(total=len(mine), desc=f"chunks (rank {ctx.rank}/{ctx.world})", unit="chunk", disable=not show)

    def warn(message: str) -> None:
        print(f"sdekit: warning: {message}", file=sys.stderr, flush=True)

    try:
        run.run_chunks(out, config, sample_chunk, mine, device=device, warn=warn, on_chunk=lambda k, new: bar.update())
    except ScoreError as error:  # the model broke the score contract: not the options' fault
        raise UserError(f"--model {config.model!r}: {error}") from error
    except (FloatingPointError, StepLimitError) as error:  # a non-finite state; an adaptive solve that stalled
        raise UserError(f"sampling with {config.method!r} failed: {error}") from error
    except (ValueError, TypeError) as error:  # sampler options rejected at the call
        message = str(error)
        if config.seeds == "sample" and message.startswith("generator: "):  # a method that draws for the batch
            raise UserError(f"--per-sample-seeds: {message.removeprefix('generator: ')}") from error
        given = f"the options {config.options}" if config.options else "its default options"
        raise UserError(f"sampler {config.method!r} rejected {given}: {error}") from error
    finally:
        bar.close()


def _finish(out: Path, config: Any, model: Any, seconds: float, quality: bool) -> None:
    from sdekit.app import run

    path = run.write_samples(out, config, lambda x: _storage(x, model.kind))
    grid = _draw(out, config)
    print(f"{config.num} samples of {config.model!r} with {config.method!r} in {seconds:.1f} s")
    print(f"samples: {path}")
    print(f"grid:    {grid}" if grid else "grid:    (no picture for this event shape)")
    for line in _quality(run.verify_samples(out, config), config) if quality else []:
        print(line)


def _storage(x: Tensor, kind: str) -> np.ndarray:
    if kind == "image":
        from sdekit.app.models.digits import to_uint8

        return to_uint8(x).numpy()
    return x.float().numpy() if x.dtype in (torch.float16, torch.bfloat16) else x.numpy()


def _first(out: Path, config: Any, count: int) -> Tensor:
    from sdekit.app import run

    parts, have = [], 0
    for x in run.iter_chunks(out, config):
        parts.append(x)
        have += len(x)
        if have >= count:
            break
    return torch.cat(parts)[:count]


def _draw(out: Path, config: Any) -> Path | None:
    from sdekit.app import run
    from sdekit.app.models import _plots

    shape = tuple(config.shape)
    path = out / run.GRID_FILE
    condition = Condition.from_json(config.condition)
    if condition.inpaint is not None:  # originals | masked | completions, eight per row
        completions = _storage(_first(out, config, 64), "image")
        from sdekit.app.models import get_model

        model = get_model(config.model)
        assert model.dataset is not None  # checked before sampling
        originals = _storage(model.dataset()[0][: len(completions)], "image")
        panel = inpainting_panel(originals, mask_of(condition.inpaint, shape), completions)
        run.atomic_write(path, lambda tmp: _plots.image_grid(panel, tmp, columns=24))
    elif len(shape) == 3 and shape[0] in (1, 3):
        array = _storage(_first(out, config, 256), "image")  # pixels of values clamped to [−1, 1]
        run.atomic_write(path, lambda tmp: _plots.image_grid(array, tmp))
    elif shape == (2,):
        points = _first(out, config, 4096).double().numpy()
        log_density = _mixture().log_prob if config.model == "gmm2d" else None
        title = f"{config.model}, {config.method}: {len(points)} samples"
        run.atomic_write(path, lambda tmp: _plots.points_plot(points, tmp, log_density, title))
    else:
        return None
    return path


# --------------------------------------------------------------------------- eval, info


def _mixture() -> GaussianMixture:
    from sdekit.app.models import gmm2d

    return gmm2d.mixture()


def _quality(samples: np.ndarray, config: Any) -> list[str]:
    """Quality lines for a finished run's samples: FD-digits for digits, mixture metrics for gmm2d."""
    condition = Condition.from_json(config.condition)
    if condition.active:
        if config.model != "digits":
            return []
        from sdekit.app.models import digits

        return digits_quality(condition, digits.from_uint8(torch.from_numpy(samples)))
    if config.model == "digits":
        from sdekit.app.models import digits, fd

        if samples.dtype != np.uint8:
            raise UserError(f"the digits samples are {samples.dtype}, not the uint8 pixels `sdekit sample` writes")
        images = digits.from_uint8(torch.from_numpy(samples))
        value, floor = fd.fd_digits(images), fd.real_halves_fd()
        return [
            f"FD-digits {value:.3f} (n={len(images)} vs the 1797 real digits); "
            f"between two halves of the real data {floor:.3f} (ratio {value / floor:.2f})"
        ]
    if config.model == "gmm2d":
        return [str(evaluate(torch.from_numpy(samples).double(), _mixture()))]
    return []


def cmd_eval(args: argparse.Namespace) -> int:
    """``sdekit eval OUT``: quality figures of a finished run, refused if its files do not belong together."""
    from sdekit.app import run

    if args.run is not None and args.run_option is not None and args.run != args.run_option:
        raise UserError(f"eval: two run folders given ({str(args.run)!r} and --run {str(args.run_option)!r})")
    folder = args.run if args.run is not None else args.run_option
    if folder is None:
        raise UserError("eval: name the run folder, e.g. sdekit eval runs/digits")
    if not (folder / run.CONFIG_FILE).is_file() or not (folder / run.SAMPLES_FILE).is_file():
        raise UserError(f"{str(folder)!r} is not a finished run (needs {run.CONFIG_FILE} and {run.SAMPLES_FILE})")
    config = run.read_config(folder / run.CONFIG_FILE)
    lines = _quality(run.verify_samples(folder, config), config)
    print(f"run {folder}: {config.num} samples of {config.model!r} with {config.method!r} {config.options}")
    for line in lines or ["no quality figures for a user model"]:
        print(line)
    return 0


#: torch's out-of-memory error (torch.OutOfMemoryError from torch 2.5; the CUDA one before).
OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _is_out_of_memory(error: RuntimeError) -> bool:
    """A CPU allocation failure: torch raises a plain RuntimeError for it."""
    text = str(error)
    return "can't allocate memory" in text or "not enough memory" in text


def _first_words(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def _first_line(obj: object) -> str:
    return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]


def cmd_info(args: argparse.Namespace) -> int:
    """``sdekit info``: one line per model, sampler and adapter."""
    from sdekit import adapters
    from sdekit.adapters._toplevel import owners
    from sdekit.app.models import builtin_models
    from sdekit.solvers import ODE_METHODS, PREDICTORS, SDE_STEPPERS

    print(f"sdekit {__version__}\n\nmodels (--model; or module:callable, which runs user code):")
    for model in builtin_models().values():
        print(f"  {model.name:<22} {model.description}")
    print("\nsamplers (--method):")
    print(f"  {'pc':<22} predictor–corrector (--predictor, --corrector, --snr)")
    for name in sde_methods():
        print(f"  {name:<22} SDE: {_sde_line(name, PREDICTORS, SDE_STEPPERS)}")
    for name in ode_methods():
        text = _first_line(ODE_METHODS.get(name)) if name in ODE_METHODS else "adaptive embedded Runge–Kutta pair"
        print(f"  {name:<22} ODE: {text}")
    print("\nadapters (sdekit.adapters.get(name)):")
    for name in adapters.available():
        print(f"  {name:<22} {_first_line(_adapter_module(name))}")
    others = owners()
    if others:
        print(
            f"\nnote: another distribution ({', '.join(others)}) also ships a top-level 'adapters' package; "
            "import sdekit's as `from sdekit.adapters import ddpm`"
        )
    return 0


def _sde_line(name: str, *registries: Any) -> str:
    for registry in registries:
        if name in registry:
            return _first_line(registry.get(name))
    if name == "adaptive":
        return "adaptive Euler–Maruyama/Heun pair, Gotta Go Fast (--rtol, --atol)"
    return f"torchsde's {name.split(':')[-1]} method (torchsde.sdeint)"


def _adapter_module(name: str) -> object:
    import importlib

    try:
        return importlib.import_module(f"sdekit.adapters.{name}")
    except ImportError:
        return None


# --------------------------------------------------------------------------- train

#: Data ``sdekit train --data`` knows: the 2-D mixture oracle (fresh samples every step) and the 1797 digits.
TRAIN_DATA = ("gmm2d", "digits")
TRAIN_CONFIG = "train.json"
TRAIN_CHECKPOINT = "checkpoint.safetensors"


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    """What decides the trained weights: a resumed run must match it exactly (the final sampling may differ)."""
    keys = ("data", "loss", "train_steps", "batch_size", "lr", "ema_decay", "levels", "sigma_max", "sigma_min",
            "projections", "seed", "threads")  # fmt: skip
    config = {key: getattr(args, key) for key in keys}
    return {**config, "device": args.device.split(":")[0], "sdekit_version": __version__}


def _training_data(name: str, generator_seed: int) -> tuple[Any, tuple[int, ...], float, float]:
    """``(data, event shape, data std, largest pairwise distance)`` of a named training set."""
    if name == "gmm2d":
        mixture = _mixture()
        probe = mixture.sample(2048, generator=torch.Generator().manual_seed(generator_seed)).double()
        data: Any = lambda n, g: mixture.sample(n, generator=g)  # noqa: E731 -- fresh samples every step
        return data, (2,), float(probe.std()), float(torch.cdist(probe, probe).max())
    from sdekit.app.models import digits

    images, _ = digits.load_data()
    flat = images.flatten(1).double()
    return images, tuple(images.shape[1:]), float(flat.std()), float(torch.cdist(flat, flat).max())


def cmd_train(args: argparse.Namespace) -> int:
    """``sdekit train``: train a score model on named data with any loss (resumable), then sample and evaluate it."""
    from sdekit.app import run
    from sdekit.app.train import LOSSES, ImageScore, ScoreMLP, ema_weights, recipe, train_score_model

    check = [("--train-steps", args.train_steps, 1), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0),
             ("--threads", args.threads, 1), ("--checkpoint-every", args.checkpoint_every, 0),
             ("--num-samples", args.num, 0), ("--projections", args.projections, 1)]  # fmt: skip
    multi_level = args.loss in ("smld", "ssm", "ism")
    if multi_level:
        check.append(("--levels", args.levels, 2))
    for flag, value, least in check:
        if value < least:
            raise UserError(f"{flag} must be >= {least}, got {value}")
    for flag, value in (("--lr", args.lr), ("--sigma-min", args.sigma_min), ("--sigma-max", args.sigma_max)):
        if flag != "--lr" and not multi_level:
            continue
        if value is not None and not (0 < value < float("inf")):
            raise UserError(f"{flag} must be a finite number > 0, got {value}")
    if not 0 < args.ema_decay < 1:
        raise UserError(f"--ema-decay must lie in (0, 1), got {args.ema_decay}")
    try:
        check_choice("--data", args.data, TRAIN_DATA)
        check_choice("--loss", args.loss, LOSSES)
        sampler, fixed = _sampler(args.method)
    except ValueError as error:
        raise UserError(str(error)) from error
    options = _options(args)
    device = torch.device(_device(args.device))
    data, shape, data_std, spread = _training_data(args.data, args.seed)
    sigma_max = args.sigma_max if args.sigma_max is not None else spread
    if multi_level and not args.sigma_min < sigma_max:
        raise UserError(f"--sigma-min {args.sigma_min} must be below the largest level {sigma_max:.4g}")
    levels = {"sigma_max": sigma_max, "sigma_min": args.sigma_min, "levels": args.levels} if multi_level else {}
    try:
        plan = recipe(args.loss, projections=args.projections, **levels)
    except ValueError as error:
        raise UserError(str(error)) from error
    out = Path(args.out) if args.out is not None else Path("runs") / f"train-{args.data}-{args.loss}"
    config = _train_config(args)
    torch.set_num_threads(args.threads)
    with run.lock(out):
        _prepare_train_out(run, out, config)
        torch.manual_seed(args.seed)
        if args.data == "gmm2d":
            model: torch.nn.Module = ScoreMLP(plan.sde, dim=2, data_std=data_std)
        else:
            from sdekit.app.models.digits import DigitsUNet

            model = ImageScore(DigitsUNet(), plan.sde, data_std=data_std)
            data = data.to(device)
        model.to(device)
        generator = torch.Generator(device).manual_seed(args.seed + 1)
        checkpoint = out / TRAIN_CHECKPOINT
        result = train_score_model(
            model, plan.sde, data, loss=plan.loss, steps=args.train_steps, batch_size=args.batch_size, lr=args.lr,
            ema_decay=args.ema_decay, generator=generator, checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every, progress=not args.quiet,
        )  # fmt: skip
        done = f"{result.steps} steps" + (
            f", {len(result.losses)} in this run ({result.seconds:.1f} s)" if result.losses else ""
        )
        print(f"trained {args.data} with {args.loss!r} on {plan.sde!r}: {done}")
        print(f"weights: {checkpoint} (the EMA copy under ema/: sdekit.app.train.ema_weights)")
        if args.num == 0:
            return 0
        result.ema.load_state_dict(ema_weights(checkpoint))
        x = _train_samples(sampler, fixed, options, plan.sde, result.ema, (args.num, *shape), args, device)
        path = out / "samples.npz"
        run.atomic_write(path, lambda tmp: _save_npz(tmp, x))
        print(f"samples: {path} ({args.num} with {args.method!r})")
        if args.data == "gmm2d":
            print(evaluate(x.double().cpu(), _mixture()))
        else:
            from sdekit.app.models import fd

            print(f"FD-digits {fd.fd_digits(x.float().cpu().clamp(-1, 1)):.3f} (real halves {fd.real_halves_fd():.3f})")
    return 0


def _prepare_train_out(run: Any, out: Path, config: dict[str, Any]) -> None:
    """Write OUT/train.json, or check that the one there asks for the same training (a resume)."""
    import json

    path = out / TRAIN_CONFIG
    if path.is_file():
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            message = f"{str(path)!r} is not a readable training configuration ({error}); use another --out"
            raise UserError(message) from error
        if held != config:
            differ = sorted(k for k in config.keys() | held.keys() if held.get(k) != config.get(k))
            raise UserError(f"{str(out)!r} holds a training run with other settings ({', '.join(differ)}); "
                            "use another --out or the same options")  # fmt: skip
    elif (out / TRAIN_CHECKPOINT).exists():
        raise UserError(f"{str(out)!r} holds a checkpoint without {TRAIN_CONFIG}; use another --out")
    else:
        run.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))


def _save_npz(path: Path, x: Tensor) -> None:
    with open(path, "wb") as handle:  # a handle: np.savez would append .npz to the temporary name
        np.savez(handle, samples=x.float().cpu().numpy())


def _train_samples(
    sampler: Sampler, fixed: dict[str, Any], options: dict[str, Any], sde: Any, score: Any,
    shape: tuple[int, ...], args: argparse.Namespace, device: torch.device,
) -> Tensor:  # fmt: skip
    generator = torch.Generator(device).manual_seed(args.seed + 2)
    try:
        with torch.no_grad():
            x = sampler(sde, score, shape, generator=generator, device=device, progress=not args.quiet, **fixed,
                        **options)  # fmt: skip
    except (FloatingPointError, StepLimitError) as error:
        raise UserError(f"sampling with {args.method!r} failed: {error}") from error
    except (ValueError, TypeError) as error:
        raise UserError(f"sampler {args.method!r} rejected the options {options}: {error}") from error
    return cast(Tensor, x)


# --------------------------------------------------------------------------- demo


def _samplers(steps: int) -> dict[str, tuple[Sampler, dict[str, object]]]:
    return {
        f"ancestral, {steps} steps": (sample, {"method": "ancestral", "steps": steps}),
        f"euler_maruyama, {steps} steps": (sample, {"method": "euler_maruyama", "steps": steps}),
        f"reverse_diffusion + langevin, {steps // 2} steps": (pc_sample, {"steps": steps // 2}),
        f"heun ODE, {max(steps // 10, 1)} steps": (ode_sample, {"method": "heun", "steps": max(steps // 10, 1)}),
    }


def demo(num: int, steps: int, seed: int) -> None:
    """Sample the 2-D mixture with each sampler and print quality beside the floor."""
    mixture = _mixture()
    sde = VPSDE()
    score = mixture.score(sde)
    print(f"sdekit {__version__}: 2-D, 8-mode Gaussian mixture, VP SDE (beta 0.1..20), exact score, {num} samples")
    for name, (sampler, options) in _samplers(steps).items():
        start = time.perf_counter()
        result = sampler(
            sde, score, (num, 2), generator=torch.Generator().manual_seed(seed), return_info=True, **options
        )
        x, info = cast(tuple[Tensor, SampleInfo], result)
        seconds = time.perf_counter() - start
        print(f"{name:<40} NFE {info.nfe:>5}  {seconds:6.2f} s  {evaluate(x, mixture).row()}")


def cmd_demo(args: argparse.Namespace) -> int:
    if args.num < 1 or args.steps < 2:
        raise UserError("--num-samples must be >= 1 and --steps >= 2")
    demo(args.num, args.steps, args.seed)
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS = {"sample": cmd_sample, "eval": cmd_eval, "info": cmd_info, "demo": cmd_demo, "train": cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; user errors print ``sdekit: error: ...`` and return 2 (no traceback).

    Freed host memory is kept for reuse (:func:`sdekit.app.host_memory.keep_freed_memory`; opt out
    with ``SDEKIT_KEEP_FREED_MEMORY=0``): the repeated large allocations of sampling then stop
    costing page faults.
    """
    try:
        require()
    except MissingRequirementError as error:
        print(f"sdekit: error: {error}", file=sys.stderr)
        return 2
    keep_freed_memory()
    from sdekit.app.distributed import PeerError
    from sdekit.app.models import ModelError, WeightsError
    from sdekit.app.run import RunError, StorageError

    argv = _normalise(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return COMMANDS[args.command](args)
    except (UserError, ModelError, WeightsError, RunError) as error:
        _report(f"sdekit: error: {error}")
        return 2
    except StorageError as error:  # the machine's fault, not the user's: exit 1
        _report(f"sdekit: error: {error.strerror}")
        return 1
    except PeerError as error:
        if LAUNCHED_BY_SDEKIT not in os.environ:  # under --procs the failing rank's line is the one line
            _report(f"sdekit: error: {error}")
        return 1
    except EstimateError as error:
        _report(f"sdekit: error: {error}")
        return 2
    except (OutOfMemory, MemoryError) as error:
        _report(f"sdekit: error: out of memory ({_first_words(error) or type(error).__name__}); use a smaller --chunk")
        return 1
    except RuntimeError as error:
        if not _is_out_of_memory(error):
            raise
        _report(f"sdekit: error: out of memory ({_first_words(error)}); use a smaller --chunk")
        return 1
    except KeyboardInterrupt:
        # Finished chunks are on disk (written atomically); the run resumes from them.
        _report("sdekit: interrupted; rerun the same command to resume")
        return 130


def _report(line: str) -> None:
    """Print the final line to stderr; a worker of ``--procs`` hands it to the launcher, which prints each once."""
    folder = os.environ.get(LAUNCHED_BY_SDEKIT)
    if folder:
        with open(Path(folder) / f"rank-{int(os.environ.get('RANK', '0')):05d}", "a") as f:
            f.write(line + "\n")
    else:
        print(line, file=sys.stderr)
