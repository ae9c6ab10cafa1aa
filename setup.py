"""What pyproject.toml cannot say in a stable form: the AMI parser's C step and the FastAGI
server's socket closer, optional extensions (setuptools' ``ext-modules`` table in
pyproject.toml is still experimental).

Optional: without a C compiler and Python's headers the install goes on,
ccbridge/ami/codec.py parses in Python alone and ccbridge/agi/transport.py closes its
sockets on the loop's thread (tests/unit/test_ami_fastparse.py and test_agi_closer.py
say when one is missing where `make venv` should have built it).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ccbridge.ami._fastparse", ["ccbridge/ami/_fastparse.c"], optional=True),
        Extension("ccbridge.agi._closer", ["ccbridge/agi/_closer.c"], optional=True),
    ]
)
