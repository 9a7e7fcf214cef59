"""Helpers only runner processes load: speech assembly, captions, text splitting,
reference clips, image headers and the video pipeline.

A runner imports these inside ``setup()``/``run()``; the worker never loads them
(``tests/test_layers.py`` fences it). They may use numpy, soundfile and PyAV.
"""
