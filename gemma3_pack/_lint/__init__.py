"""Lint: doctor for GGUFs and .litertlm bundles; the checks behind the one rule table (gemma3_pack/_rules.py)."""
