"""The app's pages, declared once: app.py builds its ``st.navigation`` from them, Home lists
them, and links between pages name them by path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str  # relative to app.py; the URL is the file name without its number (/Train)
    title: str
    icon: str
    what: str  # one line on Home


HOME = PageInfo(
    "app_pages/0_Home.py", "Home", ":material/home:", "what actscale does, the loaded model, the latest runs"
)
TRAIN = PageInfo(
    "app_pages/1_Train.py",
    "Train",
    ":material/model_training:",
    "pick a model and a dataset, check the prompts, train one or several methods",
)
EXPLORE = PageInfo(
    "app_pages/2_Explore.py",
    "Explore",
    ":material/search:",
    "one run's scalars per layer and position, heads, top components",
)
COMPARE = PageInfo(
    "app_pages/3_Compare.py",
    "Compare",
    ":material/compare:",
    "methods side by side, parameter counts, sweeps and trade-offs",
)
PLAYGROUND = PageInfo(
    "app_pages/4_Playground.py",
    "Playground",
    ":material/tune:",
    "a prompt, a run and a β slider: watch the answer move",
)
RUNS = PageInfo(
    "app_pages/5_Runs.py",
    "Runs",
    ":material/folder_open:",
    "every stored run: open, delete, download, upload, share, report",
)

PAGES = (HOME, TRAIN, EXPLORE, COMPARE, PLAYGROUND, RUNS)
