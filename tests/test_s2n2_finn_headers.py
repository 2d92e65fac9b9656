"""The open-header stand-ins in ``finn_s2n2/finn/hls/include`` against FINN's own conventions.

FINN's cppsim template reads and writes streams with ``npy2apintstream`` / ``apintstream2npy``, which need
``flatten.hpp`` (newer finn-hlslib) and ``half`` (Vitis); the ``ap_int.h`` wrapper adds Vitis' ``sign_flag``.
Compiled with g++ and hls4ml's open ``ap_types`` only: several signed elements per word pack like
finn-hlslib's ``flatten`` (lane j at bits [j*W, (j+1)*W)): with npy2apintstream's default ``reverse_inner``
the first npy element is the top lane, which is FINN's python ``pack_innermost_dim_as_hex_string`` without
reversal, and without ``reverse_inner`` it is the bottom lane (python with reversal); both round-trip through
``apintstream2npy``; ``sign_flag`` is the signedness."""

from __future__ import annotations

import subprocess

import numpy as np

SRC = r"""
#define AP_INT_MAX_W 64
#include <cstdio>
#include "cnpy.h"
#include "npy2apintstream.hpp"
static_assert(ap_int<5>::sign_flag && !ap_uint<5>::sign_flag, "sign_flag");
int main() {
    FILE *f = std::fopen("words.txt", "w");
    for (int rev = 1; rev >= 0; rev--) {
        hls::stream<ap_uint<12> > s;
        npy2apintstream<ap_uint<12>, ap_int<4>, float>("in.npy", s, rev);
        std::vector<ap_uint<12> > words;
        while (!s.empty()) {
            ap_uint<12> w = s.read();
            std::fprintf(f, "%llu\n", (unsigned long long)w.to_uint64());
            words.push_back(w);
        }
        for (auto &w : words) s.write(w);
        apintstream2npy<ap_uint<12>, ap_int<4>, float>(s, {2, 3}, rev ? "out1.npy" : "out0.npy", rev);
    }
    std::fclose(f);
    return 0;
}
"""


def test_open_flatten_and_sign_flag_pack_like_finn(tmp_path):
    from pathlib import Path

    import finn
    from finn.util.data_packing import pack_innermost_dim_as_hex_string
    from qonnx.core.datatype import DataType

    from finn_s2n2.finn import hls
    from hwreshape.compat import ap_types_include

    npy2stream = Path(finn.__file__).resolve().parent / "templates" / "npy2stream"
    (tmp_path / "t.cpp").write_text(SRC)
    cmd = [hls.CXX, "-std=c++17", "-O0", "-w", f"-I{npy2stream}", f"-isystem{hls.OPEN_INCLUDE}"]
    cmd += [f"-isystem{ap_types_include()}", "t.cpp", str(npy2stream / "cnpy.cpp"), "-lz", "-o", "t"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    x = np.array([[-8, 7, -1], [3, 0, -5]], dtype=np.float32)
    np.save(tmp_path / "in.npy", x)
    res = subprocess.run(["./t"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    words = [int(v) for v in (tmp_path / "words.txt").read_text().split()]
    top_first = pack_innermost_dim_as_hex_string(x, DataType["INT4"], 12, reverse_inner=False)
    bottom_first = pack_innermost_dim_as_hex_string(x, DataType["INT4"], 12, reverse_inner=True)
    assert words == [int(h, 16) for h in list(top_first) + list(bottom_first)]
    assert words[0] == 0x87F  # -8, 7, -1 as INT4 lanes 2, 1, 0
    for rev in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"out{rev}.npy"), x)
