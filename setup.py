"""What pyproject.toml cannot say in a stable form: the AMI parser's C step, an optional
extension (setuptools' ``ext-modules`` table in pyproject.toml is still experimental).

Optional: without a C compiler and Python's headers the install goes on and
ccbridge/ami/codec.py parses in Python alone (tests/unit/test_ami_fastparse.py says when
it is missing where `make venv` should have built it).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ccbridge.ami._fastparse", ["ccbridge/ami/_fastparse.c"], optional=True),
    ]
)
