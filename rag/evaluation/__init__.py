"""Offline evaluation harness: question sets, runs, metrics and reports."""
