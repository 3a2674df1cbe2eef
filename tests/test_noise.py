"""The fast path's noise generator (memrnn.noise): Philox4x32-10's published answers, the normals an
independent numpy implementation computes from its blocks, splits that change nothing, the normal law,
and the same values from the kernels' portable build."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from memrnn import fused, noise
from memrnn.models import EnsembleRNN

# Random123's known-answer vectors for philox4x32-10 (tests/kat_vectors of its distribution)
KNOWN = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
         ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
         ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
          (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


def _philox_numpy(counter, key):
    """Philox4x32-10 on arrays of counter words, in numpy's uint64 arithmetic."""
    c = [np.asarray(w, dtype=np.uint64) for w in counter]
    a, b, mask = np.uint64(key[0]), np.uint64(key[1]), np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ a, p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ b, p0 & mask]
        a, b = (a + np.uint64(0x9E3779B9)) & mask, (b + np.uint64(0xBB67AE85)) & mask
    return c


def _normals_numpy(n, key, mean, std):
    """The stream's first n normals by its documented layout: block 256 c + j of chunk c gives offsets
    j, 256 + j, 512 + j, 768 + j, Box-Muller in float64 on 24-bit uniforms."""
    blocks = np.arange(-(-n // 1024) * 256, dtype=np.uint64)
    w = _philox_numpy([blocks & np.uint64(0xFFFFFFFF), blocks >> np.uint64(32), 0 * blocks, 0 * blocks],
                      (key & 0xFFFFFFFF, key >> 32))
    u = [(x >> np.uint64(8)).astype(np.float64) / 2**24 for x in w]
    r0, r1 = np.sqrt(-2 * np.log(u[0] + 2**-24)), np.sqrt(-2 * np.log(u[2] + 2**-24))
    t0, t1 = 2 * np.pi * u[1], 2 * np.pi * u[3]
    parts = [r0 * np.cos(t0), r0 * np.sin(t0), r1 * np.cos(t1), r1 * np.sin(t1)]
    out = np.stack([p.reshape(-1, 256) for p in parts], 1).reshape(-1)  # (chunk, 4, 256)
    return mean + std * out[:n]


@pytest.mark.parametrize("counter,key,expected", KNOWN)
def test_philox_gives_the_published_answers(counter, key, expected):
    assert noise.philox(counter, key) == expected
    assert tuple(int(w[()]) for w in _philox_numpy(counter, key)) == expected


def test_normals_are_the_streams_box_muller_values():
    key, n = 0x0123456789ABCDEF, 5000  # not a multiple of 1024: a partial last chunk
    drawn = noise.normal_(torch.empty(n), key, 0.5, 2.0).double().numpy()
    np.testing.assert_allclose(drawn, _normals_numpy(n, key, 0.5, 2.0), rtol=0, atol=2e-5)


def test_bf16_fill_is_the_float32_stream_rounded():
    wide = noise.normal_(torch.empty(3000), 11, 0.2, 0.5)
    assert torch.equal(noise.normal_(torch.empty(3000, dtype=torch.bfloat16), 11, 0.2, 0.5), wide.to(torch.bfloat16))


def test_split_offset_and_strided_fills_are_parts_of_one_stream():
    whole = noise.normal_(torch.empty(10_000), 7)
    for parts in (1, 2, 3):
        torch.testing.assert_close(noise.normal_(torch.empty(10_000), 7, parts=parts), whole, rtol=0, atol=0)
    for first in (2048, 1500):  # at a chunk boundary and inside a chunk
        torch.testing.assert_close(noise.normal_(torch.empty(10_000 - first), 7, first=first), whole[first:],
                                   rtol=0, atol=0)
    matrix = torch.full((100, 103), -9.0)  # rows of 100 values, three other columns left alone
    noise.normal_(matrix[:, 1:101], 7, parts=2)
    torch.testing.assert_close(matrix[:, 1:101].reshape(-1), whole, rtol=0, atol=0)
    assert (matrix[:, 0] == -9).all() and (matrix[:, 101:] == -9).all()
    assert not torch.equal(noise.normal_(torch.empty(10_000), 8), whole)


def test_a_fill_of_many_streams_is_each_streams_own_fill():
    """One key per out[m]: each member's rows (here the pixel columns of a wider matrix, as the fast
    path's sampler fills them) hold exactly what a fill of that stream alone holds."""
    keys = [5, 2**64 - 1, 123456789]
    matrix = torch.full((3, 40, 103), -9.0, dtype=torch.bfloat16)
    noise.normal_(matrix[..., :100], keys, 0.1, 0.3)
    for m, k in enumerate(keys):
        alone = noise.normal_(torch.empty(40, 100, dtype=torch.bfloat16), k, 0.1, 0.3)
        assert torch.equal(matrix[m, :, :100], alone)
    assert (matrix[..., 100:] == -9).all()


def test_draws_follow_the_normal_law_and_are_uncorrelated():
    x = noise.normal_(torch.empty(1_000_000), 42, 0.1, 0.3).double().numpy()
    assert stats.kstest(x, stats.norm(0.1, 0.3).cdf).pvalue > 0.01
    z = (x - 0.1) / 0.3
    for lag in (1, 256, 512, 1024):  # neighbours, the block's other outputs, the next chunk
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 0.005, lag
    other = noise.normal_(torch.empty(1_000_000), 43).double().numpy()
    assert abs(np.corrcoef(z, other)[0, 1]) < 0.005


def test_key_comes_from_the_generator():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert noise.key(a) == noise.key(b) != noise.key(a)


@pytest.mark.parametrize("out,kwargs,message", [
    (torch.empty(10, dtype=torch.float64), {}, "float32 or bfloat16"),
    (torch.empty(10, 4).t(), {}, "contiguous and evenly spaced"),
    (torch.empty(10), {"first": -1}, "stream position"),
    (torch.empty(10), {"key": -1}, "unsigned 64-bit"),
    (torch.empty(2, 10), {"key": [1, 2**64]}, "unsigned 64-bit"),
    (torch.empty(3, 10), {"key": [1, 2]}, "one key per out"),
    (torch.empty(10), {"parts": 0}, "at least one range"),
    (torch.empty(10), {"parts": -1}, "at least one range"),
])
def test_bad_fills_are_refused(out, kwargs, message):
    with pytest.raises(ValueError, match=message):
        noise.normal_(out, **{"key": 1, **kwargs})


_PORTABLE_BUILD = """
import sys, torch
from memrnn import fused, noise
from memrnn.models import EnsembleRNN
model = EnsembleRNN("lstm", 2, 12, 20, seeds=[1, 2])
frames = torch.randn(2, 7, 9, 12, generator=torch.Generator().manual_seed(0))
torch.save({"lanes": fused._cells(torch.float32).lanes(),
            "normals": noise.normal_(torch.empty(5000), 0x0123456789ABCDEF),
            "hidden": fused.unroll(model, frames, torch.zeros(2, 7, 9))[1]}, sys.argv[1])
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="an x86 flag turns AVX-512 off")
def test_kernels_built_without_avx512_give_the_same_results(tmp_path):
    """A CPU without AVX-512 gets the kernels' portable paths (8-lane vectors, Philox on gcc's vector
    loop): compiled here with -mno-avx512f (``MEMRNN_CFLAGS``), the normals are the stream's Box-Muller
    values and an LSTM unroll is this build's to float32 rounding."""
    out = tmp_path / "portable.pt"
    done = subprocess.run([sys.executable, "-c", _PORTABLE_BUILD, str(out)], capture_output=True, text=True,
                          env={**os.environ, "MEMRNN_CFLAGS": "-mno-avx512f"})
    assert not done.returncode, done.stderr
    portable = torch.load(out)
    assert portable["lanes"] == 8
    np.testing.assert_allclose(portable["normals"].double().numpy(), _normals_numpy(5000, 0x0123456789ABCDEF, 0, 1),
                               rtol=0, atol=1e-5)
    model = EnsembleRNN("lstm", 2, 12, 20, seeds=[1, 2])
    frames = torch.randn(2, 7, 9, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(portable["hidden"], fused.unroll(model, frames, torch.zeros(2, 7, 9))[1],
                               rtol=1e-5, atol=1e-6)
