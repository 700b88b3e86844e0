"""Fuzzing everos: one-input checks of its contracts (``fuzz.targets``), run by atheris
(``fuzz/fuzz_<target>.py``, coverage-guided, for hours) and by hypothesis in CI
(``fuzz/test_fuzz_targets.py``, structured inputs from ``fuzz.strategies``, in seconds).
See ``fuzz/README.md``.
"""
