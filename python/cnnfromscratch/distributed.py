"""Data-parallel training across processes (docs/DISTRIBUTED.md), the Python face of the
library's MPI ranks:

    mpirun -n 2 python train.py        # fit trains data-parallel by itself under mpirun

Each rank runs the same script on the same data; fit gives every rank its shard of each
global batch (ranks x batch_size rows), averages the gradients before every step and reduces
the metrics; only rank 0 prints. Write files from rank 0 only: ``if rank() == 0: model.save(...)``.
An exception on any rank inside fit ends the whole job (MPI_Abort) with the rank named.
"""
from __future__ import annotations

from . import _core


def available() -> bool:
    """Whether the package was built with MPI (CMake option CNN_MPI)."""
    return _core.distributed_available()


def launched_by_mpi() -> bool:
    """Whether mpirun / srun started this process (without initialising MPI)."""
    return _core.launched_by_mpi()


def rank() -> int:
    """This process's rank: 0 in a plain process."""
    return _core.distributed_rank()


def size() -> int:
    """The number of ranks: 1 in a plain process."""
    return _core.distributed_size()


def local_rank() -> int:
    """The rank among those on this machine (it picks the GPU of a GPU rank)."""
    return _core.distributed_local_rank()


def use_local_gpu() -> None:
    """Makes GPU (local rank mod the GPU count) this process's device; compile(device='cuda')
    and to('cuda') call it by themselves under mpirun."""
    _core.distributed_use_local_gpu()


__all__ = ["available", "launched_by_mpi", "local_rank", "rank", "size", "use_local_gpu"]
