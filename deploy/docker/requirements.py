"""Print the requirements of one process's image from pyproject.toml: the core dependencies plus the
process's optional group (the gateway has none). Used by the Dockerfile; stdlib only.

    python requirements.py pyproject.toml intake
"""

import sys
import tomllib

GROUPS = {
    "gateway": [],
    "intake": ["intake"],
    "grading": ["grading"],
    "notify": ["notify"],
    "archive": ["archive"],
}


def requirements(pyproject: dict, process: str) -> list[str]:
    """Core dependencies plus the process's optional groups, de-duplicated, in order."""
    project = pyproject["project"]
    out = list(project["dependencies"])
    for group in GROUPS[process]:
        out += project.get("optional-dependencies", {}).get(group, [])
    seen: set[str] = set()
    return [r for r in out if not (r in seen or seen.add(r))]


if __name__ == "__main__":
    path, process = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        print("\n".join(requirements(tomllib.load(f), process)))
