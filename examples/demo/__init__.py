"""The demo project: its files beside this package, its example data generator in seed/."""
