"""The two citizen channels and the two kinds of report."""

from enum import StrEnum


class Channel(StrEnum):
    MONCOMMISSARIAT = "moncommissariat"
    BRIGADE_NUMERIQUE = "brigade-numerique"


class ReportKind(StrEnum):
    DEALING_POINT = "dealing_point"
    DELIVERY_NETWORK = "delivery_network"


class Force(StrEnum):
    """The force competent in a commune: police nationale (ZPN) or gendarmerie nationale (ZGN)."""

    POLICE = "PN"
    GENDARMERIE = "GN"
