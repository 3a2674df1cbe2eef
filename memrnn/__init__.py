"""memrnn: see, test and control how recurrent networks keep memories.

A reproducible companion to Haviv, Rivkind & Barak, "Understanding and Controlling Memory in
Recurrent Neural Networks" (ICML 2019).
"""
__version__ = "0.1.0"
