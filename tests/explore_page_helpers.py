"""What the Explore page's test modules share: the page opened on a run or on a link's query
parameters through Streamlit's AppTest, the plotly figures it drew, and a run copied under
another id. Their tiny runs are conftest's `explore_runs`; a parameter the page left is
conftest's `param`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import open_page_link
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "2_Explore.py")
METHODS = ("activscalar", "steervec", "dynscalar")


def open_page(run_id: str | None = None) -> AppTest:
    """The page on ``run_id`` with interactive maps: plotly figures, whose specifications these
    tests read (the default, SVG images: `test_the_maps_are_svg_images_unless_interactive`)."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["interactive"] = "1"
    if run_id is not None:
        at.query_params["run"] = run_id
    return at.run()


def chart(at: AppTest, key: str) -> dict:
    """The plotly specification of the figure drawn with ``show_figure(..., key)``."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-fig-{key}")]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def chart_keys(at: AppTest) -> list[str]:
    return [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]


def open_link(**params: str) -> AppTest:
    """The Explore page opened on a link's query parameters."""
    return open_page_link(PAGE, **params)


def copy_run(root: Path, src: str, new_id: str) -> Path:
    """A copy of run ``src`` under another id (config.json names its folder)."""
    dest = root / new_id
    shutil.copytree(root / src, dest)
    config = json.loads((dest / "config.json").read_text())
    config["run_id"] = new_id
    (dest / "config.json").write_text(json.dumps(config))
    return dest
