"""Chunked, resumable, atomic sampling runs: the engine behind ``sdekit sample``.

A run of ``num`` samples is split into chunks of ``chunk`` samples (the last may be
smaller). Chunk k draws *all* its noise from a generator seeded by ``(seed, k)``
(:func:`chunk_seed`), so the samples do not depend on which process computes which
chunk, in what order, or whether the run was interrupted: a fixed ``--chunk`` gives
bit-identical results for one process, ``torchrun`` with N processes, and a resume —
on the same device type, dtype and CPU thread count (CPU reductions split work per
thread, so ``threads`` is part of the configuration; torchrun workers use 1 thread, the
CLI's default).

Layout of ``OUT``::

    run.json        the full configuration and library version (checked on rerun)
    chunks/         chunk-00000.safetensors, … one per finished chunk, each with a SHA-256
    samples.npz     all samples in chunk order (``samples``; uint8 images for image models)
    grid.png        a picture of the samples

Every file is written under a temporary name and renamed into place, so a killed run
leaves only complete files. A rerun skips chunks that verify (shape, dtype, checksum,
configuration hash) and recomputes, with a warning, those that do not. A rerun with a
different configuration is refused (:class:`RunError`): choose a new ``OUT``.
Memory is bounded by one chunk: chunks are streamed into ``samples.npz``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sdekit.checks import check_nonnegative_int, check_positive_int

__all__ = [
    "RunConfig",
    "RunError",
    "chunk_seed",
    "chunk_sizes",
    "chunk_path",
    "prepare_out",
    "run_chunks",
    "load_chunk",
    "iter_chunks",
    "write_samples",
    "atomic_write",
]

CONFIG_FILE = "run.json"
SAMPLES_FILE = "samples.npz"
GRID_FILE = "grid.png"
#: keys of ``run.json`` that may differ between a run and its resumption.
_VOLATILE = ("sdekit_version",)
SampleFn = Callable[[int, int, torch.Generator], Tensor]


class RunError(ValueError):
    """A run that cannot proceed: unwritable ``OUT``, or ``OUT`` holding a run with another configuration."""


@dataclass
class RunConfig:
    """Everything that determines a run's samples (stored as ``run.json``)."""

    model: str
    method: str
    num: int
    chunk: int
    seed: int
    shape: list[int]
    dtype: str = "float32"
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    weights_sha256: str | None = None
    threads: int = 1
    sdekit_version: str = ""

    def __post_init__(self) -> None:
        check_positive_int("num", self.num)
        check_positive_int("chunk", self.chunk)
        check_nonnegative_int("seed", self.seed)

    @property
    def num_chunks(self) -> int:
        return -(-self.num // self.chunk)

    def identity(self) -> dict[str, Any]:
        """The configuration without volatile keys, as plain JSON values."""
        data = json.loads(json.dumps(asdict(self), sort_keys=True, default=str))
        return {k: v for k, v in data.items() if k not in _VOLATILE}

    def digest(self) -> str:
        """SHA-256 of :meth:`identity`: stamped into every chunk file."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()


def chunk_seed(seed: int, k: int) -> int:
    """The 63-bit seed of chunk ``k``'s generator, derived from ``(seed, k)`` by NumPy's SeedSequence."""
    words = np.random.SeedSequence([seed, k]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def chunk_sizes(num: int, chunk: int) -> list[int]:
    """Sizes of the chunks of a ``num``-sample run: ``chunk`` each, the last one the remainder."""
    return [min(chunk, num - start) for start in range(0, num, chunk)]


def chunk_path(out: Path, k: int) -> Path:
    """``OUT/chunks/chunk-<k>.safetensors``."""
    return out / "chunks" / f"chunk-{k:05d}.safetensors"


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_out(out: Path, config: RunConfig, *, write: bool = True) -> None:
    """Create ``OUT`` (and ``OUT/chunks``), refuse a different existing configuration, write ``run.json``.

    A stored configuration is only binding once a chunk is finished: a run that failed
    before its first chunk (say, on a bad sampler option) can be rerun with other options.
    With ``write=False`` (ranks other than 0) only the check is made.
    """
    path = out / CONFIG_FILE
    binding = path.exists() and _has_chunks(out)  # a run with no finished chunk has nothing to protect
    if binding:
        _check_same(path, config)
    if not write:
        return
    try:
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        if not binding:
            text = json.dumps(asdict(config), indent=2, sort_keys=True, default=str) + "\n"
            atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as error:
        raise RunError(f"cannot write to output folder {str(out)!r}: {error.strerror or error}") from error


def _has_chunks(out: Path) -> bool:
    return any((out / "chunks").glob("chunk-*.safetensors"))


def _check_same(path: Path, config: RunConfig) -> None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"{str(path)!r} exists but is not a readable run configuration ({error})") from error
    stored = {k: v for k, v in stored.items() if k not in _VOLATILE}
    current = config.identity()
    diff = [
        f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now"
        for k in sorted(set(stored) | set(current))
        if stored.get(k) != current.get(k)
    ]
    if diff:
        raise RunError(
            f"{str(path.parent)!r} holds a run with a different configuration ({'; '.join(diff)}); "
            "rerun with the same options to resume it, or choose another --out"
        )


def load_chunk(out: Path, config: RunConfig, k: int, *, warn: Callable[[str], None] | None = None) -> Tensor | None:
    """Chunk ``k`` if its file exists and verifies; None (with a warning if it existed but was bad) otherwise."""
    from safetensors import safe_open

    path = chunk_path(out, k)
    if not path.exists():
        return None
    expected = (chunk_sizes(config.num, config.chunk)[k], *config.shape)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sdekit", "{}"))
            x = f.get_tensor("samples")
        problem = _chunk_problem(x, meta, expected, config, k)
    except Exception as error:  # any unreadable file is recomputed
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return x
    (warn or _warn)(f"chunk {k} ({path}) is {problem}; recomputing it")
    return None


def _chunk_problem(x: Tensor, meta: dict[str, Any], expected: tuple[int, ...], config: RunConfig, k: int) -> str | None:
    if meta.get("config") != config.digest() or meta.get("chunk") != k:
        return "from another configuration"
    if tuple(x.shape) != expected or str(x.dtype).removeprefix("torch.") != config.dtype:
        return f"of shape {tuple(x.shape)} {x.dtype}, expected {expected} {config.dtype}"
    if meta.get("sha256") != _sha256(x):
        return "corrupt (checksum mismatch)"
    return None


def _sha256(x: Tensor) -> str:
    return hashlib.sha256(x.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def save_chunk(out: Path, config: RunConfig, k: int, x: Tensor) -> None:
    """Write chunk ``k`` atomically, stamped with its index, the configuration digest and a SHA-256."""
    from safetensors.torch import save_file

    x = x.detach().cpu().contiguous()
    meta = {"chunk": k, "config": config.digest(), "sha256": _sha256(x)}
    # one metadata key: safetensors writes several in a random order, and chunk files should be reproducible too
    atomic_write(chunk_path(out, k), lambda tmp: save_file({"samples": x}, str(tmp), {"sdekit": json.dumps(meta)}))


def run_chunks(
    out: Path,
    config: RunConfig,
    sample_fn: SampleFn,
    chunks: Iterable[int],
    *,
    device: torch.device | str = "cpu",
    warn: Callable[[str], None] | None = None,
    on_chunk: Callable[[int, bool], None] | None = None,
) -> list[int]:
    """Compute (and write) each chunk in ``chunks`` that is not already done; return those computed.

    ``sample_fn(k, n, generator)`` returns chunk k's ``n`` samples, drawing every random
    number from ``generator`` (seeded by :func:`chunk_seed`). ``on_chunk(k, computed)`` is
    called after each chunk, e.g. to advance a progress bar.
    """
    sizes = chunk_sizes(config.num, config.chunk)
    computed = []
    for k in chunks:
        done = load_chunk(out, config, k, warn=warn) is not None
        if not done:
            generator = torch.Generator(device=device).manual_seed(chunk_seed(config.seed, k))
            x = sample_fn(k, sizes[k], generator)
            save_chunk(out, config, k, x)
            computed.append(k)
        if on_chunk is not None:
            on_chunk(k, not done)
    return computed


def iter_chunks(out: Path, config: RunConfig) -> Iterator[Tensor]:
    """The finished chunks in order; raises :class:`RunError` if one is missing or does not verify."""
    for k in range(config.num_chunks):
        x = load_chunk(out, config, k)
        if x is None:
            raise RunError(f"chunk {k} of {str(out)!r} is missing or corrupt: rerun the sample command to finish it")
        yield x


def write_samples(out: Path, config: RunConfig, convert: Callable[[Tensor], np.ndarray]) -> Path:
    """Stream every chunk, through ``convert``, into ``OUT/samples.npz`` (array ``samples``), atomically.

    Only one chunk is in memory at a time. The zip entry has a fixed timestamp, so
    equal samples give a byte-identical file.
    """
    path = out / SAMPLES_FILE
    atomic_write(path, lambda tmp: _write_npz(tmp, config, (convert(x) for x in iter_chunks(out, config))))
    return path


def _write_npz(path: Path, config: RunConfig, arrays: Iterator[np.ndarray]) -> None:
    first = next(arrays)
    header = {
        "descr": np.lib.format.dtype_to_descr(first.dtype),
        "fortran_order": False,
        "shape": (config.num, *first.shape[1:]),
    }
    entry = zipfile.ZipInfo("samples.npy", date_time=(1980, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive, archive.open(entry, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, header)
        for array in itertools.chain([first], arrays):
            f.write(np.ascontiguousarray(array, dtype=first.dtype).tobytes())
