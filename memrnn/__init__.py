"""memrnn: see, test and control how recurrent networks keep memories.

A reproducible companion to Haviv, Rivkind & Barak, "Understanding and Controlling Memory in
Recurrent Neural Networks" (ICML 2019).
"""
__version__ = "0.1.0"
# the one place that names the repository: the book's configuration, install cells and fetches derive
# from it (tests/test_book.py checks)
REPOSITORY = "https://github.com/memrnn/memrnn"
