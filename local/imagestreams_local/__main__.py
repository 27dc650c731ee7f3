"""``imagestreams-local``: ImageStreams on an embedded AWS, without Docker or an account.

  demo                     the one-command story: a push becomes a digest-pinned rollout (checks itself)
  up                       the playground: the stack from template.yaml, running until Ctrl-C; prints export lines
  push REPO:TAG            (with up's exports) push a small image to the playground's ECR; the ECR event follows
  delete REPO:TAG          (with up's exports) delete a tag from the playground's ECR; the ECR event follows
  invoke FUNCTION --event FILE   (with up's exports) run one function of the template with a JSON event
  scan REPO:TAG|REPO@DIGEST [--critical N ...]   (with up's exports) set an image's ECR scan result; event follows
  sign REPO:TAG|REPO@DIGEST [--failed|--cosign]  (with up's exports) set an image's signing status; event follows
  advance MINUTES          (with up's exports) move the playground's clock forward (delayed messages come due)

The concepts (stream, head, history, trigger, drift) are explained in docs/concepts.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BACKENDS = {"auto": None, "local": True, "moto": False}


def _parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagestreams-local", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")
    dynamodb_help = "DynamoDB backend: DynamoDB Local (needs Java and `make deps`), moto, or auto"
    p = verbs.add_parser("demo", help="the one-command story (default)")
    p.add_argument("--dynamodb", choices=list(BACKENDS), default="auto", help=dynamodb_help)
    p = verbs.add_parser("up", help="start the playground and print its export lines; Ctrl-C stops it")
    p.add_argument("--dynamodb", choices=list(BACKENDS), default="auto", help=dynamodb_help)
    p.add_argument("--state", type=Path, metavar="DIR",
                   help="keep streams, images, triggers and sample targets in DIR across restarts")
    p.add_argument("--fast", action="store_true", help="run the reconciler every 10 s instead of its schedule")
    p.add_argument("--parameter", action="append", type=_parameter, default=[], metavar="KEY=VALUE",
                   help="a template parameter (like sam deploy --parameter-overrides); repeatable")
    p = verbs.add_parser("push", help="push a small image to the playground's ECR (REPO:TAG)")
    p.add_argument("ref", metavar="REPO:TAG")
    p.add_argument("--platforms", metavar="OS/ARCH,...", help="a multi-arch image, e.g. linux/amd64,linux/arm64")
    p.add_argument("--no-event", action="store_true", help="push without the ECR event (as if EventBridge lost it)")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="wait this long for the head to move and its fires to land (0: do not wait)")
    p = verbs.add_parser("delete", help="delete a tag from the playground's ECR (REPO:TAG)")
    p.add_argument("ref", metavar="REPO:TAG")
    p.add_argument("--no-event", action="store_true", help="delete without the ECR event")
    p = verbs.add_parser("invoke", help="run one function of the template with a JSON event; print its answer")
    p.add_argument("function", metavar="FUNCTION", help="e.g. IngestFunction, ingest, admin")
    p.add_argument("--event", required=True, metavar="FILE", help="the event as a JSON file (- for stdin)")
    p = verbs.add_parser("scan", help="set an image's ECR scan result (a test double); the scan event follows")
    p.add_argument("ref", metavar="REPO:TAG|REPO@DIGEST")
    for severity in ("critical", "high", "medium", "low", "informational"):
        p.add_argument(f"--{severity}", type=_count, default=0, metavar="N", help=f"{severity.upper()} findings")
    p.add_argument("--failed", action="store_true", help="the scan failed (no findings)")
    p.add_argument("--enhanced", action="store_true", default=None,
                   help="as Amazon Inspector (enhanced scanning): the Inspector2 Scan event")
    p = verbs.add_parser("sign", help="set an image's managed-signing status (a test double); the Signer event follows")
    p.add_argument("ref", metavar="REPO:TAG|REPO@DIGEST")
    p.add_argument("--failed", action="store_true", help="signing FAILED")
    p.add_argument("--cosign", action="store_true", help="attach a cosign signature referrer instead")
    p = verbs.add_parser("advance", help="move the playground's clock forward (delayed messages come due)")
    p.add_argument("minutes", type=float, metavar="MINUTES")
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count (0 or more), got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .playground import PlaygroundError

    try:
        if args.command in (None, "demo"):
            from .demo import run

            return run(use_dynamodb_local=BACKENDS[getattr(args, "dynamodb", "auto")])
        from . import playground

        if args.command == "up":
            return playground.up(state=args.state, fast=args.fast, use_dynamodb_local=BACKENDS[args.dynamodb],
                                 parameters=dict(args.parameter))
        if args.command == "push":
            platforms = [p.strip() for p in args.platforms.split(",") if p.strip()] if args.platforms else None
            return playground.push(args.ref, platforms=platforms, emit=not args.no_event, wait=args.wait)
        if args.command == "delete":
            return playground.delete(args.ref, emit=not args.no_event)
        if args.command == "scan":
            counts = {s.upper(): getattr(args, s) for s in ("critical", "high", "medium", "low", "informational")
                      if getattr(args, s)}
            return playground.scan(args.ref, counts=counts, failed=args.failed, enhanced=args.enhanced)
        if args.command == "sign":
            return playground.sign(args.ref, failed=args.failed, cosign=args.cosign)
        if args.command == "advance":
            return playground.advance(args.minutes)
        return playground.invoke(args.function, args.event)
    except PlaygroundError as exc:
        print(f"imagestreams-local: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:  # an unknown template parameter
        print(f"imagestreams-local: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. DynamoDB Local asked for but Java or the jar missing
        print(f"imagestreams-local: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
