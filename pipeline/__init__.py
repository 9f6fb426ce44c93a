"""The ground floor every stage stands on: the record's contract, the problem codes and the configuration tree.
Standard library only (Python 3.10+), so the collector's Lambda, the lake writer's image and every tool can carry it.
"""
