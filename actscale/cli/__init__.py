"""``python -m actscale train|sweep|eval|analyse|list`` (docs/interfaces.md, Command line): the
parser (`parser`) and the commands (`commands`).

Each command imports the engine when it runs; the parser reads only names and the config's
field defaults, so ``--help`` and a bad option answer without loading torch (a test checks).

Progress goes to stderr; the last line on stdout is one JSON object. Exit status 0 on success,
2 on bad input (one line on stderr, no traceback), 1 on anything else."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from actscale.cli.commands import cmd_analyse, cmd_eval, cmd_list, cmd_sweep, cmd_train
from actscale.cli.parser import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, build_parser
from actscale.errors import ActscaleError, TrainingCancelled, one_line

__all__ = ["EXIT_BAD_INPUT", "EXIT_ERROR", "EXIT_OK", "build_parser", "main"]


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
