"""`python -m pipeline readme|json`: README's settings table made anew from the configuration tree (`make docs`), or
the tree this shell gives, as the JSON document a child process is handed."""

from __future__ import annotations

import json
import sys

from pipeline.config import README, load, readme_with_table


def main(argv: list[str]) -> int:
    if argv == ["readme"]:
        README.write_text(readme_with_table(README.read_text()))
        return 0
    if argv == ["json"]:
        print(json.dumps(json.loads(load().to_json()), indent=2, sort_keys=True))
        return 0
    print("usage: python -m pipeline readme | json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
