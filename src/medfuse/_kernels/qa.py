"""The per-case QA sums in one pass (private; :func:`medfuse.quality.case_qa`).

:func:`_qa_sums` reads a fused label map ``(Z, Y, X)`` and its three uncertainty maps once and adds, per
range of z-slices (one row ``t`` of the outputs per range):

* ``hist[t, l]``: voxels of label ``l`` (labels ``>= hist.shape[1]`` go to the last column, which the
  caller adds as one spare class and checks is empty);
* ``counts[t] = (boundary voxels, foreground voxels, boundary voxels beyond the array)``, where a
  boundary voxel has a face neighbour (6-connectivity) of another label, as
  :func:`medfuse.quality.boundary_band` defines it, and a foreground voxel a label above 0. ``pad[2 a]`` /
  ``pad[2 a + 1]`` (axis ``a`` = z, y, x) say that the array is a box inside a larger image whose voxels
  beyond that face are background with maps 0 (folder fusion's domain): a foreground voxel on such a face
  is then a boundary voxel, and so is its background neighbour beyond the face (the third count: one per
  face, each such neighbour borders the box through one face only);
* ``sums[t, k]`` (float64): map ``k`` (entropy, mutual information, disagreement) summed over the boundary
  voxels (``k``) and over the foreground voxels (``3 + k``).

It replaces a bincount, six passes of boolean arrays for the band and six boolean gathers (each a copy) by
one read of the four arrays; the numpy version stays in the tests as its twin.
"""

from __future__ import annotations

import numpy as np

from . import jit

__all__ = ["_qa_sums"]


@jit
def _qa_sums(k0, k1, t, lab, ent, mi, dis, pad, hist, counts, sums):
    nz, ny, nx = lab.shape
    top = hist.shape[1] - 1
    e_b = m_b = d_b = e_f = m_f = d_f = np.float64(0.0)  # float64 sums (a Python 0.0 would add in float32 as Python)
    n_b = n_f = n_o = 0
    for z in range(k0, k1):
        for y in range(ny):
            row = lab[z, y]
            # a face without a neighbour inside: background beyond it when pad says so, else no neighbour
            # (a value equal to the voxel's own)
            for x in range(nx):
                v = row[x]
                hist[t, min(v, top)] += 1
                zero = v - v
                out = 0  # faces of this voxel that border the padded background
                if x > 0:
                    edge = row[x - 1] != v
                else:
                    edge = pad[4] != 0 and v != zero
                    out += edge
                if x + 1 < nx:
                    edge = edge or row[x + 1] != v
                elif pad[5] != 0 and v != zero:
                    edge = True
                    out += 1
                if y > 0:
                    edge = edge or lab[z, y - 1, x] != v
                elif pad[2] != 0 and v != zero:
                    edge = True
                    out += 1
                if y + 1 < ny:
                    edge = edge or lab[z, y + 1, x] != v
                elif pad[3] != 0 and v != zero:
                    edge = True
                    out += 1
                if z > 0:
                    edge = edge or lab[z - 1, y, x] != v
                elif pad[0] != 0 and v != zero:
                    edge = True
                    out += 1
                if z + 1 < nz:
                    edge = edge or lab[z + 1, y, x] != v
                elif pad[1] != 0 and v != zero:
                    edge = True
                    out += 1
                n_o += out
                if edge:
                    n_b += 1
                    e_b += ent[z, y, x]
                    m_b += mi[z, y, x]
                    d_b += dis[z, y, x]
                if v > zero:
                    n_f += 1
                    e_f += ent[z, y, x]
                    m_f += mi[z, y, x]
                    d_f += dis[z, y, x]
    counts[t, 0] += n_b
    counts[t, 1] += n_f
    counts[t, 2] += n_o
    sums[t, 0] += e_b
    sums[t, 1] += m_b
    sums[t, 2] += d_b
    sums[t, 3] += e_f
    sums[t, 4] += m_f
    sums[t, 5] += d_f
