"""mkdocs hook: the notebooks of ``examples/`` become pages of the site (rendered by mkdocs-jupyter).

They live beside the example scripts, outside ``docs/``, so this hook adds them to the site's files before
mkdocs-jupyter converts them, and adds a "Notebooks" section to the nav for each one that exists (a missing
notebook is left out rather than breaking ``mkdocs build --strict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: notebook file -> its title in the nav, in nav order
NOTEBOOKS = {"quickstart.ipynb": "Quick start", "ensemble_selection.ipynb": "Choosing an ensemble"}


def _present() -> list[str]:
    return [name for name in NOTEBOOKS if (ROOT / "examples" / name).is_file()]


def on_config(config: Any) -> Any:
    present = _present()
    if present and config.nav is not None:
        section = {"Notebooks": [{NOTEBOOKS[n]: f"examples/{n}"} for n in present]}
        config.nav.insert(1, section)
    return config


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    for name in _present():
        files.append(File(f"examples/{name}", src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
