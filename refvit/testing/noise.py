r"""What a central difference can resolve: the noise floor of the gradient checks.

The checks compare an analytic directional derivative :math:`P = \langle J^\top g, v\rangle` with

.. math::  D(h) = \frac{L(x + h v) - L(x - h v)}{2h}, \qquad L(x) = \langle g, f(x)\rangle .

:math:`D(h)` misses the derivative :math:`L'(x; v)` by

* **truncation**, :math:`\tfrac{h^2}{6} L''' + O(h^4)`. A second step measures it:
  :math:`D(h) - D(h/2) = \tfrac34 \cdot \tfrac{h^2}{6} L''' + O(h^4)`, so
  :math:`T = \tfrac43\,\lvert D(h) - D(h/2)\rvert`.
* **rounding**. Each computed :math:`L` is off by up to some :math:`\varepsilon_L`, so :math:`D(h)` is off by
  up to :math:`R = \varepsilon_L / h`, with :math:`\varepsilon_L` the sum of

  - the larger of :math:`u \sum_i \lvert g_i\rvert\,(\lvert f_i(x)\rvert + \max_j \lvert x_j\rvert)`
    (:math:`u = 2^{-53}`) and :math:`\hat\sigma`, the noise measured on :math:`L` itself (below). The first
    is the rounding of terms as large as the outputs and the inputs: the forward's own and the sum
    :math:`\langle g, f\rangle`. The input's size is there for forwards whose small outputs come from
    larger terms that cancel: GELU at :math:`x = -9` computes :math:`\tfrac12 x (1 + \operatorname{erf})`,
    where :math:`1 + \operatorname{erf}(x/\sqrt2)` rounds to exactly 0, so :math:`L` is flat to the last bit,
    no measurement shows noise, and yet no derivative below :math:`u\lvert x\rvert / h` is resolved;
  - :math:`u \sum_i \lvert\partial L / \partial x_i\rvert\,\lvert x_i\rvert`: rounding :math:`x + h v` moves
    each :math:`x_i` by up to :math:`u \lvert x_i\rvert`.

**Measuring the noise.** :math:`L` is sampled at eleven points :math:`x + j\,\tfrac h2\,v`,
:math:`j = -5 \dots 5` (:math:`j = \pm 2` are the points of :math:`D(h)`, :math:`j = \pm 1` those of
:math:`D(h/2)`). Over a few :math:`h` a smooth :math:`L` is a polynomial to far below rounding, so its
:math:`k`-th differences are noise; noise of standard deviation :math:`\sigma` gives :math:`k`-th differences
of variance :math:`\binom{2k}{k}\sigma^2`, so
:math:`\hat\sigma_k^2 = \operatorname{mean}\bigl((\Delta^k L)^2\bigr) / \binom{2k}{k}` (Moré and Wild,
"Estimating computational noise", SIAM J. Sci. Comput. 33, 2011), and
:math:`\hat\sigma = \max(\hat\sigma_3, \hat\sigma_4)`. This sees cancellation inside :math:`f` that
:math:`\lvert f\rvert` hides: :math:`\tfrac12 x(1 + \tanh u)` for :math:`u \ll 0` is tiny, but
:math:`1 + \tanh u` keeps only a few digits.

The floor is :math:`\kappa\,(T + R)` with the safety factor :math:`\kappa =` ``SAFETY`` :math:`= 8`: with
noise alone (no truncation, no analytic error), :math:`\lvert D(h)\rvert` exceeded :math:`T + \hat\sigma/h` by
at most 7.4 times in two million simulated samples (Gaussian or uniform noise). The analytic side
:math:`P` also rounds, but by about :math:`u \sum\lvert\text{terms}\rvert`, :math:`h` times less than
:math:`D(h)`; the floor neglects it.

A wrong gradient makes :math:`\lvert D(h) - P\rvert` as large as its error; the floor only grows where
:math:`D(h)` itself is unreliable (tiny derivatives under cancellation, a kink within a few :math:`h` of
:math:`x`), and there no central difference can tell a small gradient error from noise.
"""
from __future__ import annotations

from math import comb
from typing import NamedTuple

import numpy as np

UNIT_ROUNDOFF = 2.0 ** -53
SAFETY = 8.0
POINTS = tuple(range(-5, 6))  # L is sampled at x + j (h/2) v for these j


class NoiseFloor(NamedTuple):
    """What a central difference with step ``h`` can resolve, as an absolute error of the derivative."""
    floor: float       # SAFETY * (truncation + rounding)
    truncation: float  # T = 4/3 |D(h) - D(h/2)|
    rounding: float    # R = epsilon_L / h
    noise: float       # sigma-hat, the noise measured on L


def noise_floor(along, h, output_scale, input_scale, known=None):
    r"""The noise floor of :math:`D(h)` along one direction.

    ``along(t)`` returns :math:`L(x + t v)`; ``known`` maps offsets already evaluated (e.g.
    ``{h: L(x + hv), -h: L(x - hv)}``) to their values, so ten forwards at most are new.
    ``output_scale``: :math:`\sum_i \lvert g_i\rvert\,(\lvert f_i(x)\rvert + \max_j \lvert x_j\rvert)`;
    ``input_scale``: :math:`\sum_i \lvert\partial L/\partial x_i\rvert\,\lvert x_i\rvert` over the perturbed
    elements.
    """
    known = known or {}
    values = np.array([known[j * h / 2.0] if j * h / 2.0 in known else along(j * h / 2.0) for j in POINTS],
                      dtype=np.float64)
    centre = POINTS.index(0)
    d_h = (values[centre + 2] - values[centre - 2]) / (2.0 * h)
    d_half = (values[centre + 1] - values[centre - 1]) / h
    truncation = 4.0 / 3.0 * abs(d_h - d_half)
    noise = max(_sigma(values, 3), _sigma(values, 4))
    epsilon = max(noise, UNIT_ROUNDOFF * output_scale) + UNIT_ROUNDOFF * input_scale
    rounding = epsilon / h
    return NoiseFloor(SAFETY * (truncation + rounding), truncation, rounding, noise)


def _sigma(values, k):
    """Noise standard deviation from the ``k``-th differences of equally spaced samples."""
    return float(np.sqrt(np.mean(np.diff(values, k) ** 2) / comb(2 * k, k)))
