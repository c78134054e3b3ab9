"""``python -m ladtheory {bandit, bandit-iterated, check, proofs, book}``: one module per subcommand."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "bandit": ("ladtheory.bandit", "the controlled 50-arm bandit experiment (LAD vs GRPO vs FlowRL)"),
    "bandit-iterated": ("ladtheory.bandit_iterated", "iterated LAD vs GRPO, reference refreshed each round"),
    "check": ("ladtheory.check", "validate a user-defined f-divergence generator and try it on the bandit"),
    "proofs": ("ladtheory.proof", "check every step-checked derivation in proofs/"),
    "book": ("ladtheory.book", "build the Jupyter Book of derivations"),
}


def usage() -> str:
    lines = ["usage: python -m ladtheory COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`python -m ladtheory COMMAND --help` for the options of one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
