"""Test-time augmentation: a network's output averaged over symmetric copies of its input.

A square stamp has eight symmetries (flips about either axis, their product,
and the same four after a transposition).  The generator was trained on
flipped and rotated scenes, so each copy gives an equally good estimate whose
errors are partly independent; their mean, each output turned back, is a
better one (`~astrodeblend.pipeline.Deblender`'s ``augment``).
"""

import torch

from ..errors import InvalidInputError

#: The symmetries of a square in the order they are used: (axes flipped, transposed).
#: The first four are the flips; the last four add a transposition.
SYMMETRIES = (((), False), ((-1,), False), ((-2,), False), ((-2, -1), False),
              ((), True), ((-1,), True), ((-2,), True), ((-2, -1), True))


def _check(n, tensor):
    if isinstance(n, bool) or n not in (1, 2, 4, 8):
        raise InvalidInputError(f"the number of symmetric copies must be 1, 2, 4 or 8, "
                                f"not {n!r}")
    if tensor.ndim < 3:
        raise InvalidInputError(f"symmetric copies need a batch (B, ..., H, W), not shape "
                                f"{tuple(tensor.shape)}")
    if n > 4 and tensor.shape[-1] != tensor.shape[-2]:
        raise InvalidInputError(f"copies transposed (n={n}) need square stamps, not "
                                f"{tuple(tensor.shape[-2:])}")


def symmetric_copies(tensor, n):
    """Stack ``n`` symmetric copies of a ``(B, ..., H, W)`` batch.

    Parameters
    ----------
    tensor : `torch.Tensor`
        A batch whose last two axes are the image's rows and columns.
    n : {1, 2, 4, 8}
        Number of copies, the first ``n`` of `SYMMETRIES` (1: the batch itself).

    Returns
    -------
    `torch.Tensor`
        ``(n * B, ..., H, W)``: copy ``k`` of every image, then copy ``k + 1``.

    Raises
    ------
    InvalidInputError
        If ``n`` is not 1, 2, 4 or 8, ``tensor`` has fewer than 3 axes, or
        ``n > 4`` on stamps that are not square.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> symmetric_copies(x, 2)[:, 0].tolist()
    [[[0.0, 1.0], [2.0, 3.0]], [[1.0, 0.0], [3.0, 2.0]]]
    """
    _check(n, tensor)
    if n == 1:
        return tensor
    copies = []
    for axes, transposed in SYMMETRIES[:n]:
        copy = tensor.flip(axes) if axes else tensor
        copies.append(copy.transpose(-1, -2) if transposed else copy)
    return torch.cat(copies)


def mean_of_copies(output, n):
    """Average a network's output on `symmetric_copies`, each copy turned back.

    Parameters
    ----------
    output : `torch.Tensor`
        ``(n * B, ..., H, W)``, the network's output on ``symmetric_copies(x, n)``.
    n : {1, 2, 4, 8}
        Number of copies.

    Returns
    -------
    `torch.Tensor`
        ``(B, ..., H, W)``, in the orientation of the original batch.

    Raises
    ------
    InvalidInputError
        As `symmetric_copies`, or if ``output`` does not hold ``n`` copies.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(3, 2, 8, 8)
    >>> bool(torch.allclose(mean_of_copies(symmetric_copies(x, 8), 8), x))
    True
    """
    _check(n, output)
    if len(output) % n:
        raise InvalidInputError(f"{len(output)} outputs are not {n} copies of one batch")
    if n == 1:
        return output
    total = None
    for (axes, transposed), part in zip(SYMMETRIES[:n], output.chunk(n), strict=True):
        part = part.transpose(-1, -2) if transposed else part
        part = part.flip(axes) if axes else part
        total = part if total is None else total + part
    return total / n
