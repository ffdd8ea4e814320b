"""Apex: the small, real reference platform the 15 revenue-critical suites exercise."""
