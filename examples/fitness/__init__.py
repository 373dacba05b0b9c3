"""The fitness club project: its files beside this package, its example data in seed/."""
