"""Sparse matrices for the probability-space recursions."""

from __future__ import annotations

import warnings

import torch

INT32_LIMIT = 2**31


def csr_matrix(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """The CSR matrix of ``values`` at ``(rows, cols)`` (duplicates summed), with 32-bit indices
    where they fit: MKL's sparse products take 32-bit indices and would otherwise convert 64-bit
    ones on every product."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sparse CSR support is flagged as beta
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape).coalesce()
        csr = coo.to_sparse_csr()
        if max(*shape, csr._nnz()) >= INT32_LIMIT:
            return csr
        crow, col = csr.crow_indices().int(), csr.col_indices().int()
        return torch.sparse_csr_tensor(crow, col, csr.values(), shape)
