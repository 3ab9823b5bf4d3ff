"""Where a torch stage runs: the one place that turns a pool's GPU reservation into a device.

A worker runs its models on ``cuda`` only when its pool reserves GPUs (``num_gpus`` > 0) and
CUDA exists in the worker's process; otherwise on the CPU. On Ray an actor with ``num_gpus``
sees exactly the GPUs it was given (Ray sets ``CUDA_VISIBLE_DEVICES``), so ``cuda`` is its own
GPU; a CPU pool never touches a GPU even on a GPU node (it reserved none).
"""

from __future__ import annotations


def cuda_available() -> bool:
    """True if torch sees a CUDA device in this process."""
    import torch

    return bool(torch.cuda.is_available())


def pool_device(gpus: float, cuda: bool | None = None) -> str:
    """The torch device of a worker whose pool reserves ``gpus`` GPUs per worker.

    Args:
        gpus: GPUs per worker in the pool (fractions share one GPU).
        cuda: whether CUDA exists here; None: ask torch (in the worker's own process).
    """
    if gpus <= 0:
        return "cpu"
    return "cuda" if (cuda_available() if cuda is None else cuda) else "cpu"


def local_device() -> str:
    """The device of a render in this process (`talkfarm render`, streaming): the process may
    use the machine's GPU, as if its pool reserved one."""
    return pool_device(1.0)
