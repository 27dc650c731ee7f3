"""``imagestreams-local`` / ``python -m imagestreams_local``: run the local demo on the embedded AWS."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imagestreams-local", description=__doc__)
    parser.add_argument("command", nargs="?", default="demo", choices=["demo"])
    parser.add_argument("--dynamodb", choices=["auto", "local", "moto"], default="auto",
                        help="DynamoDB backend: DynamoDB Local (needs Java and `make deps`), moto, or auto")
    args = parser.parse_args(argv)
    from .demo import run

    return run(use_dynamodb_local={"auto": None, "local": True, "moto": False}[args.dynamodb])


if __name__ == "__main__":
    sys.exit(main())
