"""The ``kubepedia`` command: a thin face wiring the rooms together.

``kubepedia agent`` runs inside member clusters, where its memory is what an operator
budgets for: it is handed to :mod:`agent.cli` before anything of the syncer, the read API
or the other commands is imported (SQLAlchemy, asyncpg and the command modules cost the
agent about 25 MB it would never use). Every other command lives in
:mod:`kubepedia.commands`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        from agent.cli import main as agent_main

        return agent_main(args[1:])
    from kubepedia.commands import main as commands_main

    return commands_main(args)


if __name__ == "__main__":
    sys.exit(main())
