"""The sampling contract: inverse CDF over a seeded float32 uniform stream."""

from __future__ import annotations

import numpy as np
import pytest

from pgdeploy.runtime.sampling import UniformStream, inverse_cdf


def test_stream_is_the_same_however_consumed() -> None:
    expected = np.random.default_rng(4).random(10_000, dtype=np.float32)
    stream = UniformStream(4)
    got = [stream.take(3), np.array([stream.next() for _ in range(5000)], np.float32)]
    got += [stream.take(4000), np.array([stream.next()], np.float32), stream.take(996)]
    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_inverse_cdf_counts_cumulative_sums_at_or_below_u() -> None:
    probs = np.array([[0.25, 0.25, 0.5]] * 4, np.float32)
    uniforms = np.array([0.0, 0.25, 0.4999, 0.5], np.float32)
    np.testing.assert_array_equal(inverse_cdf(probs, uniforms), [0, 1, 1, 2])


def test_inverse_cdf_is_a_valid_action_when_rounding_leaves_u_above_the_total() -> None:
    probs = np.array([[0.3, 0.3, 0.3]], np.float32)  # sums to 0.9 < u
    assert inverse_cdf(probs, [0.95]).tolist() == [2]


def test_inverse_cdf_frequencies_match_probabilities() -> None:
    probs = np.tile(np.array([0.1, 0.6, 0.3], np.float32), (200_000, 1))
    actions = inverse_cdf(probs, UniformStream(0).take(len(probs)))
    freq = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.005)


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097])
def test_take_returns_float32_of_requested_length(n: int) -> None:
    values = UniformStream(1).take(n)
    assert values.dtype == np.float32 and values.shape == (n,)
