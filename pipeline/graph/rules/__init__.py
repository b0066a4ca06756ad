"""Graph rewrite rules, one per file; ``pipeline.graph.fusion.PASSES`` says in which order they run.

Each rule (see ``_base.Rule``) is a pattern anchored on one op type, a ``check`` that returns
why a match is left alone, and a ``rewrite``; the module docstring gives the maths.
"""
