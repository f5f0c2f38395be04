from setuptools import setup

setup(cffi_modules=["node/chain/packetcrypt/accel_build.py:ffibuilder"])
