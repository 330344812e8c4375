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
    samples.npz     all samples in chunk order (``samples``; uint8 images for image models), and
                    ``sdekit.json``: the configuration's digest and the digest of its chunks
    grid.png        a picture of the samples
    .lock           held (``flock``) by the process running in ``OUT``; a second one is refused

Every file is written under a temporary name and renamed into place, so a killed run
leaves only complete files; the temporary files a killed run leaves behind are removed by
the next run, under the lock. A rerun skips chunks that verify (shape, dtype, checksum,
configuration hash) and recomputes, with a warning, those that do not. A rerun with a
different configuration is refused (:class:`RunError`): choose a new ``OUT``; so is a
folder holding chunks or samples but no ``run.json`` (nothing says what they are).
``sdekit eval`` refuses a ``samples.npz`` whose digests do not match ``run.json`` and the chunks.
A write the machine fails (disk full, I/O error) raises :class:`StorageError`. Memory is
bounded by one chunk: chunks are streamed into ``samples.npz``, and nothing is kept per chunk.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import socket
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sdekit.checks import check_nonnegative_int, check_positive_int, format_bytes

__all__ = [
    "RunConfig",
    "with_stored_default_grid",
    "RunError",
    "StorageError",
    "lock",
    "hold_rank",
    "check_space",
    "read_identity",
    "verify_samples",
    "chunk_seed",
    "chunk_size",
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
LOCK_FILE = ".lock"
RANKS_FILE = ".ranks"
#: the member of ``samples.npz`` that says which configuration and which chunks it was written from.
IDENTITY_MEMBER = "sdekit.json"
#: keys of ``run.json`` that may differ between a run and its resumption.
_VOLATILE = ("sdekit_version",)
SampleFn = Callable[[int, int, torch.Generator], Tensor]


class RunError(ValueError):
    """A run that cannot proceed as asked: unwritable or busy ``OUT``, or ``OUT`` holding another run."""


class StorageError(OSError):
    """The machine failed a write (disk full, I/O error): nothing finished is lost; free space and rerun."""


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
    #: A conditional run's :class:`sdekit.app.conditioning.Condition` as JSON ({} for an unconditional one).
    condition: dict[str, Any] = field(default_factory=dict)
    #: "chunk": one generator per chunk, seeded by (seed, k); "sample": one per sample, seeded by (seed, i),
    #: so a sample does not depend on --chunk or --procs.
    seeds: str = "chunk"
    #: The grid a fixed-grid method used when ``--grid`` was not given: "log_snr" for runs started since
    #: 2026-12-04 (the library's default since), "uniform" before; a resumed run keeps its own.
    default_grid: str = "uniform"

    def __post_init__(self) -> None:
        check_positive_int("num", self.num)
        check_positive_int("chunk", self.chunk)
        check_nonnegative_int("seed", self.seed)
        if self.seeds not in SEEDINGS:
            raise ValueError(f"seeds must be one of {', '.join(SEEDINGS)}, got {self.seeds!r}")

    @classmethod
    def from_json(cls, text: str, source: str) -> RunConfig:
        """The configuration stored in ``text`` (read from ``source``); :class:`RunError` if it is not one."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise RunError(f"{source!r} is not valid JSON ({error}); it is not a run configuration") from error
        if not isinstance(data, dict):
            raise RunError(f"{source!r} holds a JSON {type(data).__name__}, not a run configuration (an object)")
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(n for n in _REQUIRED if n not in data)
        if unknown or missing:
            raise RunError(f"{source!r} is not a run configuration (unknown keys {unknown}, missing keys {missing})")
        try:
            config = cls(**data)
        except (TypeError, ValueError) as error:
            raise RunError(f"{source!r} is not a valid run configuration ({error})") from error
        if not isinstance(config.shape, list) or not all(isinstance(n, int) and n >= 1 for n in config.shape):
            raise RunError(f"{source!r} is not a valid run configuration (shape {config.shape!r})")
        return config

    @property
    def num_chunks(self) -> int:
        return -(-self.num // self.chunk)

    def identity(self) -> dict[str, Any]:
        """The configuration without volatile keys, as plain JSON values."""
        data = json.loads(json.dumps(asdict(self), sort_keys=True, default=str))
        if not data.get("condition"):  # unconditional runs keep the identity (and chunk digests) they had
            data.pop("condition", None)
        if data.get("seeds") == "chunk":  # so do runs seeded per chunk, as every run was before "seeds" existed
            data.pop("seeds")
        if data.get("default_grid") == "uniform":  # and runs started before the log-SNR default grid
            data.pop("default_grid")
        return {k: v for k, v in data.items() if k not in _VOLATILE}

    def digest(self) -> str:
        """SHA-256 of :meth:`identity`: stamped into every chunk file."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()


#: How a run seeds its draws (:attr:`RunConfig.seeds`).
SEEDINGS = ("chunk", "sample")

_REQUIRED = tuple(f.name for f in fields(RunConfig) if f.default is MISSING and f.default_factory is MISSING)


def chunk_seed(seed: int, k: int) -> int:
    """The 63-bit seed of chunk ``k``'s generator, derived from ``(seed, k)`` by NumPy's SeedSequence."""
    words = np.random.SeedSequence([seed, k]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def sample_seed(seed: int, i: int) -> int:
    """The 63-bit seed of sample ``i``'s generator (``seeds="sample"``): child ``i`` of ``SeedSequence(seed)``.

    Its spawn key keeps it apart from every :func:`chunk_seed` (whose ``[seed, k]`` entropy is padded
    with zeros, so a third word of 0 would not have: ``[seed, 1, 0]`` mixes as ``[seed, 1]``)."""
    words = np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def chunk_size(num: int, chunk: int, k: int) -> int:
    """The size of chunk ``k`` of a ``num``-sample run: ``chunk``, or the remainder for the last one."""
    return min(chunk, num - k * chunk)


def chunk_sizes(num: int, chunk: int) -> list[int]:
    """Sizes of all the chunks of a ``num``-sample run (a list as long as the run has chunks)."""
    return [chunk_size(num, chunk, k) for k in range(-(-num // chunk))]


def chunk_path(out: Path, k: int) -> Path:
    """``OUT/chunks/chunk-<k>.safetensors``."""
    return out / "chunks" / f"chunk-{k:05d}.safetensors"


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place (atomic on POSIX).

    An ``OSError`` on the way (disk full, I/O error) becomes a :class:`StorageError` naming the file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise _storage_error(path, error) from error
    finally:
        tmp.unlink(missing_ok=True)


def _storage_error(path: Path, error: OSError) -> StorageError:
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    what = "the disk is full" if full else error.strerror or str(error)
    message = f"cannot write {str(path)!r}: {what}; finished chunks are kept: fix it, then rerun the same command"
    return StorageError(error.errno, message)


def _tmp_files(out: Path) -> list[Path]:
    """The temporary files :func:`atomic_write` makes (``.<name>.<pid>.tmp``) for the files sdekit writes: no others."""
    names = (CONFIG_FILE, SAMPLES_FILE, GRID_FILE)
    found = [p for name in names for p in out.glob(f".{name}.*.tmp")]
    found += (out / "chunks").glob(".chunk-*.safetensors.*.tmp")
    return [p for p in found if p.name.rsplit(".", 2)[-2].isdigit()]


@contextmanager
def lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` exclusively for the block, and remove the temporary files a killed run left.

    A second process is refused with :class:`RunError` naming the holder. The lock is the
    kernel's (``flock``): it ends with the process however the process ends, SIGKILL included.
    Where ``fcntl`` does not exist (Windows) the block runs unlocked.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _folder_error(out, error) from error
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _ranks_idle(out, fcntl):
                raise RunError(
                    f"processes of an earlier run in {str(out)!r} are still writing; "
                    "wait for them, or choose another --out"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"sdekit pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            for tmp in _tmp_files(out):  # debris of a killed run: under the lock, nobody else is writing
                tmp.unlink(missing_ok=True)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunError(
                f"{str(out)!r} is in use by {holder}; wait for it to finish, or choose another --out"
            ) from None
        except OSError as error:  # a filesystem without locks, a full disk, a file we may not remove
            raise _folder_error(out, error) from error
        yield
    finally:
        os.close(fd)  # releases the lock


def _folder_error(out: Path, error: OSError) -> Exception:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return _storage_error(out / LOCK_FILE, error)
    return RunError(f"cannot write to output folder {str(out)!r}: {error.strerror or error}")


def _ranks_idle(out: Path, fcntl: Any) -> bool:
    """True if no process of an earlier run still holds ``OUT/.ranks`` (every rank does while it works)."""
    fd = os.open(out / RANKS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@contextmanager
def hold_rank(out: Path) -> Iterator[None]:
    """Mark this process as working in ``OUT`` for the block (a shared ``flock`` on ``OUT/.ranks``).

    Every rank holds it while it samples; the :func:`lock` of a later run refuses while any does,
    so its clean-up cannot remove the temporary file of a rank still writing (a rank that outlives
    rank 0 under a launcher that does not stop it).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(out / RANKS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _folder_error(out, error) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def check_space(out: Path, config: RunConfig, stored_itemsize: int) -> None:
    """Refuse a run whose chunks and ``samples.npz`` (``stored_itemsize`` bytes a value) cannot fit on the disk."""
    values = config.num * int(np.prod(config.shape, dtype=np.int64))
    itemsize = getattr(torch, config.dtype).itemsize
    existing = sum(p.stat().st_size for p in (out / "chunks").glob("chunk-*.safetensors"))
    need = values * (itemsize + stored_itemsize) - existing
    free = shutil.disk_usage(out).free
    if need > free:
        raise RunError(
            f"--num-samples {config.num} of shape {tuple(config.shape)} needs about {format_bytes(need)} of disk "
            f"in {str(out)!r} (chunks and samples.npz); {format_bytes(free)} is free: ask for fewer samples, "
            "or choose another --out"
        )


def prepare_out(out: Path, config: RunConfig, *, write: bool = True) -> None:
    """Create ``OUT`` (and ``OUT/chunks``), refuse a different existing configuration, write ``run.json``.

    A stored configuration is only binding once a chunk or ``samples.npz`` exists: a run that
    failed before its first chunk (say, on a bad sampler option) can be rerun with other
    options. Chunks or samples without a ``run.json`` are refused: nothing says what they are.
    With ``write=False`` (ranks other than 0) only the check is made.
    """
    path = out / CONFIG_FILE
    results = _has_chunks(out) or (out / SAMPLES_FILE).exists()  # a run with no result has nothing to protect
    if results and not path.exists():
        raise RunError(
            f"{str(out)!r} holds chunks or samples but no {CONFIG_FILE}, so nothing says what they are; "
            "choose another --out (or delete the folder to start again)"
        )
    if results:
        _check_same(path, config)
    if not write:
        return
    try:
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        if not results:
            text = json.dumps(asdict(config), indent=2, sort_keys=True, default=str) + "\n"
            atomic_write(path, lambda tmp: tmp.write_text(text))
    except StorageError:
        raise
    except OSError as error:
        raise RunError(f"cannot write to output folder {str(out)!r}: {error.strerror or error}") from error


def with_stored_default_grid(out: Path, config: RunConfig) -> RunConfig:
    """``config`` with the default grid of the run ``out`` holds, if it holds one with results.

    A run started before the log-SNR default (its ``run.json`` has no ``default_grid``: "uniform")
    resumes on the uniform grid, so its remaining chunks match those already written.
    """
    path = out / CONFIG_FILE
    if not path.exists() or not (_has_chunks(out) or (out / SAMPLES_FILE).exists()):
        return config
    try:
        stored = read_config(path)
    except RunError:
        return config  # prepare_out reports it
    return replace(config, default_grid=stored.default_grid)


def _has_chunks(out: Path) -> bool:
    return any((out / "chunks").glob("chunk-*.safetensors"))


def _check_same(path: Path, config: RunConfig) -> None:
    stored = read_config(path).identity()
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


def read_config(path: Path) -> RunConfig:
    """The configuration in ``path`` (a ``run.json``); :class:`RunError` if unreadable or not one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"{str(path)!r} is not a readable run configuration ({error})") from error
    return RunConfig.from_json(text, str(path))


def load_chunk(out: Path, config: RunConfig, k: int, *, warn: Callable[[str], None] | None = None) -> Tensor | None:
    """Chunk ``k`` if its file exists and verifies; None (with a warning if it existed but was bad) otherwise."""
    loaded = _load_verified(out, config, k, warn)
    return None if loaded is None else loaded[0]


def _load_verified(
    out: Path, config: RunConfig, k: int, warn: Callable[[str], None] | None
) -> tuple[Tensor, str] | None:
    """Chunk ``k`` and its verified SHA-256, or None (see :func:`load_chunk`)."""
    from safetensors import safe_open

    path = chunk_path(out, k)
    if not path.exists():
        return None
    expected = (chunk_size(config.num, config.chunk, k), *config.shape)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sdekit", "{}"))
            x = f.get_tensor("samples")
        problem = _chunk_problem(x, meta, expected, config, k)
    except Exception as error:  # any unreadable file is recomputed
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return x, meta["sha256"]
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
    from safetensors.torch import save

    x = x.detach().cpu().contiguous()
    meta = {"chunk": k, "config": config.digest(), "sha256": _sha256(x)}
    # one metadata key: safetensors writes several in a random order, and chunk files should be reproducible too.
    # Serialised in memory (one chunk) and written by Python, so a full disk is an OSError like any other.
    data = save({"samples": x}, {"sdekit": json.dumps(meta)})
    atomic_write(chunk_path(out, k), lambda tmp: tmp.write_bytes(data))


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
    number from ``generator``: one seeded by :func:`chunk_seed`, or with ``config.seeds ==
    "sample"`` a list of one per sample seeded by :func:`sample_seed` of its index in the run.
    ``on_chunk(k, computed)`` is called after each chunk, e.g. to advance a progress bar.
    """
    computed = []
    for k in chunks:
        done = load_chunk(out, config, k, warn=warn) is not None
        if not done:
            n = chunk_size(config.num, config.chunk, k)
            generator: Any = torch.Generator(device=device).manual_seed(chunk_seed(config.seed, k))
            if config.seeds == "sample":
                first = k * config.chunk
                generator = [torch.Generator(device=device).manual_seed(sample_seed(config.seed, first + j))
                             for j in range(n)]  # fmt: skip
            x = sample_fn(k, n, generator)
            save_chunk(out, config, k, x)
            computed.append(k)
        if on_chunk is not None:
            on_chunk(k, not done)
    return computed


def iter_chunks(out: Path, config: RunConfig, digests: list[str] | None = None) -> Iterator[Tensor]:
    """The finished chunks in order; raises :class:`RunError` if one is missing or does not verify.

    With ``digests`` (a list), each chunk's SHA-256 is appended to it as the chunk is read.
    """
    for k in range(config.num_chunks):
        loaded = _load_verified(out, config, k, None)
        if loaded is None:
            raise RunError(f"chunk {k} of {str(out)!r} is missing or corrupt: rerun the sample command to finish it")
        if digests is not None:
            digests.append(loaded[1])  # verified against the tensor by the load: no second pass
        yield loaded[0]


def _chunks_digest(digests: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def write_samples(out: Path, config: RunConfig, convert: Callable[[Tensor], np.ndarray]) -> Path:
    """Stream every chunk, through ``convert``, into ``OUT/samples.npz`` (array ``samples``), atomically.

    Only one chunk is in memory at a time. The archive also holds ``sdekit.json``: the
    configuration's digest and the digest of the chunks it was made from, which
    :func:`verify_samples` checks. Zip entries have a fixed timestamp, so equal samples give
    a byte-identical file.
    """
    path = out / SAMPLES_FILE

    def write(tmp: Path) -> None:
        digests: list[str] = []
        arrays = (convert(x) for x in iter_chunks(out, config, digests))
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            _write_npy(archive, config, arrays)
            identity = {
                "config_sha256": config.digest(),
                "chunks": len(digests),
                "chunks_sha256": _chunks_digest(digests),
            }
            archive.writestr(_entry(IDENTITY_MEMBER), json.dumps(identity, sort_keys=True) + "\n")

    atomic_write(path, write)
    return path


def _entry(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def _write_npy(archive: zipfile.ZipFile, config: RunConfig, arrays: Iterator[np.ndarray]) -> None:
    first = next(arrays)
    header = {
        "descr": np.lib.format.dtype_to_descr(first.dtype),
        "fortran_order": False,
        "shape": (config.num, *first.shape[1:]),
    }
    with archive.open(_entry("samples.npy"), "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, header)
        for array in itertools.chain([first], arrays):
            f.write(np.ascontiguousarray(array, dtype=first.dtype).tobytes())


def read_identity(path: Path) -> dict[str, Any]:
    """The ``sdekit.json`` member of a ``samples.npz``; :class:`RunError` if the file is not one sdekit wrote."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            identity = json.loads(archive.read(IDENTITY_MEMBER)) if IDENTITY_MEMBER in names else None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as error:
        raise RunError(f"{str(path)!r} is not a readable samples file ({type(error).__name__}: {error})") from error
    if identity is None or "samples.npy" not in names:
        raise RunError(
            f"{str(path)!r} has no {IDENTITY_MEMBER} (written by another program or an older sdekit): "
            "rerun the sample command to rewrite it"
        )
    if not isinstance(identity, dict):
        raise RunError(f"{str(path)!r} has a malformed {IDENTITY_MEMBER}")
    return identity


def verify_samples(out: Path, config: RunConfig) -> np.ndarray:
    """``OUT/samples.npz``'s samples, checked against ``config`` and against the chunks still in ``OUT``.

    Refused (:class:`RunError`) when the file was written for another configuration, from other
    chunks, with another shape, or is truncated: figures computed from it would lie.
    """
    path = out / SAMPLES_FILE
    identity = read_identity(path)
    if identity.get("config_sha256") != config.digest():
        raise RunError(
            f"{str(path)!r} was written by a run with another configuration than {CONFIG_FILE} says; "
            "rerun the sample command to rewrite it"
        )
    digests = _stored_chunk_digests(out, config)
    if digests is not None and identity.get("chunks_sha256") != _chunks_digest(digests):
        raise RunError(f"{str(path)!r} does not hold the chunks in {str(out / 'chunks')!r}; rerun the sample command")
    try:
        with np.load(path) as data:
            samples = data["samples"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise RunError(f"{str(path)!r} is truncated or corrupt ({type(error).__name__}: {error})") from error
    if samples.shape != (config.num, *config.shape):
        raise RunError(f"{str(path)!r} holds shape {samples.shape}, but the run is {(config.num, *config.shape)}")
    return samples


def _stored_chunk_digests(out: Path, config: RunConfig) -> list[str] | None:
    """The SHA-256 each chunk file records, in order; None if any chunk file is gone (nothing to compare)."""
    from safetensors import safe_open

    digests = []
    for k in range(config.num_chunks):
        path = chunk_path(out, k)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                digests.append(json.loads((f.metadata() or {}).get("sdekit", "{}")).get("sha256", ""))
        except Exception as error:  # an unreadable chunk file: say so rather than compare
            raise RunError(f"chunk {k} ({path}) is unreadable ({error}); rerun the sample command") from error
    return digests
