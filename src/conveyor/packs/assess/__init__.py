"""The assess pack (issue 14): an AI-infrastructure assessment as a parallel workflow.

Placeholder from the ``assess-model`` slice so the package imports; the ``assess-run`` slice
owns this file and replaces it with the pack's ``Pack`` descriptor.
"""
