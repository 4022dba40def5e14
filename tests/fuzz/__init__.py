"""Fuzzing helpers: valid seed inputs for every reader and a harness that reads them fully."""
