"""cffi (API mode) build script for the RandGen/RandHash/mkitem2 accelerator in accel/*.c.

setup.py names it in `cffi_modules`, so `pip install -e .` compiles `node.chain.packetcrypt._randhash_accel`.
It links the system libsodium (ChaCha20, Poly1305). Run it directly to build the module in place:
`python node/chain/packetcrypt/accel_build.py`.
"""
import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_ACCEL = os.path.join(_HERE, "accel")
_SOURCES = ("randgen.c", "randhash.c", "cryptocycle.c")
_HEADERS = ("randhash.h", "pk_internal.h")

CDEF = """
    int pk_init(void);
    int pk_create_prog(const uint8_t *seed32, uint32_t *progbuf2048, uint32_t *insns2048);
    int pk_randhash(const uint32_t *insns, int len, const uint32_t *progbuf2048, uint64_t item_no,
                    uint8_t *state2048, int cycles, int32_t *counts);
    int pk_mkitem2(const uint32_t *insns, int len, const uint32_t *progbuf2048, uint64_t item_no,
                   const uint8_t *item_seed32, uint8_t *out1024);
    int pk_build_table(const uint8_t *prog_seed32, const uint8_t *item_seed32, uint32_t count, uint8_t *out);
"""


def make_builder(absolute_paths: bool = False) -> FFI:
    # setuptools wants source paths relative to setup.py (the current directory when it runs us)
    def path(name):
        p = os.path.join(_ACCEL, name)
        return p if absolute_paths else os.path.relpath(p).replace(os.sep, "/")

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "node.chain.packetcrypt._randhash_accel",
        '#include "randhash.h"',
        sources=[path(name) for name in _SOURCES],
        depends=[path(name) for name in _HEADERS],      # rebuild on header changes; ship them in sdists
        include_dirs=[_ACCEL],
        libraries=["sodium"],
        extra_compile_args=["-O2", "-std=gnu11"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(make_builder(absolute_paths=True).compile(tmpdir=tmp, verbose=True), _HERE)
