"""`python -m ccbridge`: the same command line as the `ccbridge` script."""

from ccbridge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
