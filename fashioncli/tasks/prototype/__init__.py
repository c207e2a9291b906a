"""Prototype learning with open-set rejection (report 000): classification whose model also gives
each image's distances to learned class prototypes, and says `unknown` beyond a threshold."""
from .task import PrototypeTask

__all__ = ["PrototypeTask"]
