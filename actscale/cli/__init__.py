"""``python -m actscale train|sweep|eval|analyse|list`` (docs/interfaces.md, Command line): the
parser (`parser`) and the commands (`commands`).

Each command imports the engine when it runs; the parser reads only names and the config's
field defaults, so ``--help`` and a bad option answer without loading torch (a test checks).

Progress goes to stderr; the last line on stdout is one JSON object. Exit status 0 on success,
2 on bad input (one line on stderr, no traceback), 1 on anything else."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence

from actscale.cli.commands import cmd_analyse, cmd_eval, cmd_list, cmd_sweep, cmd_train
from actscale.cli.parser import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, build_parser
from actscale.errors import ActscaleError, TrainingCancelled, one_line

__all__ = ["EXIT_BAD_INPUT", "EXIT_ERROR", "EXIT_OK", "build_parser", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {
        "train": cmd_train,
        "sweep": cmd_sweep,
        "eval": cmd_eval,
        "analyse": cmd_analyse,
        "list": cmd_list,
    }[args.command]
    try:
        result = command(args)
    except ActscaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingCancelled as exc:
        print(f"cancelled: {exc}; nothing was stored", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was stored", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - status 1 with one line, as the contract says
        print(f"error: {one_line(exc, limit=500)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result, sort_keys=True))
    return EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    """The program (``actscale``, ``python -m actscale``): `main`, then a process that ends at
    once. Python's shutdown runs the cyclic collector over every object still alive, and a loaded
    model is about half a million of them (a transformers module tree, TransformerLens's hook
    points): 1.2-1.4 s after the JSON line with the bundled model, against 0.2 s once they are
    frozen out of its reach (`gc.freeze`; docs/measured.md, "The command's exit"). ``atexit``
    handlers (Ray's shutdown among them) and the flushing of stdout and stderr run as before;
    ``main`` itself leaves the collector alone, for a caller that goes on (a test)."""
    code = main(argv)
    gc.freeze()
    return code
