"""Errors that occlass reports to users as one clear line instead of a traceback."""


class OcclassError(Exception):
    """Base class: the message is meant for the user and names the file, row and problem."""


class DataError(OcclassError):
    """Input data is missing, malformed or inconsistent with the taxonomy."""
