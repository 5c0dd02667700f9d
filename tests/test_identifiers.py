"""The stable ids are part of the contract (schemas/identifiers.py): one namespace per kind of id, and the ids a
consumer has already stored must come out the same in every release."""

from __future__ import annotations

import uuid

from schemas import identifiers
from schemas.channels import Channel
from schemas.envelope import CASE_OPENED, event_id_for
from schemas.events import case_id_for
from schemas.reports import report_id_for


def test_each_kind_of_id_has_a_namespace_of_its_own() -> None:
    namespaces = {name: value for name, value in vars(identifiers).items() if name.endswith("_NAMESPACE")}
    assert len(namespaces) == 7 and all(isinstance(value, uuid.UUID) for value in namespaces.values())
    assert len(set(namespaces.values())) == len(namespaces)


def test_ids_already_published_stay_the_same() -> None:
    # Values of the released pipeline: a change here would give a stored report, case or event a second id.
    assert report_id_for(Channel.MONCOMMISSARIAT, "mc-1") == "9d45fd13-2723-5662-9668-2122378d21fc"
    assert case_id_for("pn-75-pp", "report:r") == "b1865525-b1c1-5f8b-8931-c6ab970202c2"
    assert event_id_for("c-1", CASE_OPENED) == "cfb58389-87ac-5ee0-a232-dbed18326231"
    assert report_id_for(Channel.BRIGADE_NUMERIQUE, "mc-1") != report_id_for(Channel.MONCOMMISSARIAT, "mc-1")
