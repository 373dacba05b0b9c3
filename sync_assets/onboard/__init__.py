"""Onboarding a team: a starter project (`syncctl init`) and a proposed mapping of a real table
(`syncctl map`). Both only write text for people to review; neither loads a project."""
