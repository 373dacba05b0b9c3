"""The Syncfabric project: the files a team owns that describe its landscape (see load.py)."""

from sync_assets.project.active import PROJECT_ENV, current, use
from sync_assets.project.load import Problem, ProjectError, load_project
from sync_assets.project.model import Project, Settings, System, Thresholds

__all__ = [
    "PROJECT_ENV",
    "Problem",
    "Project",
    "ProjectError",
    "Settings",
    "System",
    "Thresholds",
    "current",
    "load_project",
    "use",
]
