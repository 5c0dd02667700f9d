"""The units' desk (consumers/desk.py) over a real case store: pages in French, a unit's cases only, the map, the
filters, the counts; and the store's migration that gives every case its place. The same pages in the real browser,
against the whole pipeline, are in tests/test_desk_browser.py."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from consumers.case_store import CaseStore, store_url_for
from consumers.desk import ACTIVITIES, SESSION_COOKIE, case_map, create_desk_app, paris_time
from consumers.store_schema import MIGRATIONS, cases, migrate
from consumers.unit_territory import UnitTerritories
from devkit.synthetic_cases import CHAMONIX, PARIS_11, case_linked, case_opened, case_updated
from ops.desk_officers import add_officer, revoke_officer
from schemas.submissions import ActivityKind
from signalements.settings import Settings

NAMES = {PARIS_11.unit_id: "Préfecture de police", CHAMONIX.unit_id: "Brigade de Chamonix"}


@pytest.fixture
def desk_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:9")


def desk_client(settings: Settings, units: list[str], territories: UnitTerritories | None = None,
                officer_units: list[str] | None = None) -> TestClient:
    """A browser of the desk, logged in as an officer of ``officer_units`` (by default, every unit served)."""
    password = add_officer(settings.desk_officers_path, "officier.test", officer_units or units)
    client = TestClient(create_desk_app(settings, units, NAMES, territories))
    answer = client.post("/connexion", data={"identifiant": "officier.test", "mot_de_passe": password},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def store_with(settings: Settings, unit_id: str, events: list) -> CaseStore:
    store = CaseStore.open(store_url_for(None, settings.unit_store_dir, unit_id), unit_id)
    with store.transaction() as writer:
        for event in events:
            writer.apply(_decoded(event))
    return store


def _decoded(event):  # noqa: ANN001, ANN202 (a synthetic CaseEvent as the consumer decodes it)
    from schemas.envelope import decode, encode

    message = encode(event.event_type, event.payload, event_id=event.event_id, source="/tests", key=event.key)
    return decode(list(message.headers.items()), event.key.encode(), message.value)


def test_a_unit_desk_lists_its_cases_place_first_with_counts_and_a_map(desk_settings: Settings) -> None:
    now = datetime.now(UTC)
    store_with(desk_settings, PARIS_11.unit_id, [
        case_opened(PARIS_11, "oberkampf", now - timedelta(hours=2), "12 rue oberkampf", (48.8649, 2.3700)),
        case_updated(PARIS_11, "oberkampf", 2, now - timedelta(hours=1)),
        case_opened(PARIS_11, "ancien", now - timedelta(days=3), "3 rue de la roquette", (48.8555, 2.3740)),
    ]).close()
    store_with(desk_settings, CHAMONIX.unit_id, [case_opened(CHAMONIX, "gare", now, "place de la gare")]).close()
    client = desk_client(desk_settings, [PARIS_11.unit_id])

    page = client.get(f"/unites/{PARIS_11.unit_id}")
    assert page.status_code == 200 and 'lang="fr"' in page.text
    assert "Préfecture de police" in page.text
    assert re.search(r'id="nouveaux">1<', page.text) and re.search(r'id="ouverts">2<', page.text)
    rows = re.findall(r'<tr data-cas="([^"]+)">\s*<td><a [^>]*>([^<]+)</a>', page.text)
    assert [place for _, place in rows] == ["12 rue oberkampf, Paris 11e Arrondissement",
                                            "3 rue de la roquette, Paris 11e Arrondissement"]
    assert len(re.findall(r'<a href="[^"]+" class="point-cas"', page.text)) == 2
    by_reports = client.get(f"/unites/{PARIS_11.unit_id}", params={"tri": "signalements"}).text
    assert by_reports.index("oberkampf") < by_reports.index("roquette")
    fragment = client.get(f"/unites/{PARIS_11.unit_id}/liste", params={"statut": "tous"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "oberkampf" in fragment.text

    # Another unit is refused to this officer, and another unit's case does not exist on this desk.
    assert client.get(f"/unites/{CHAMONIX.unit_id}").status_code == 403
    chamonix_case = case_opened(CHAMONIX, "gare").payload.case_id
    assert client.get(f"/unites/{PARIS_11.unit_id}/cas/{chamonix_case}").status_code == 404
    case_id = rows[0][0]
    case_page = client.get(f"/unites/{PARIS_11.unit_id}/cas/{case_id}")
    assert case_page.status_code == 200 and "Traiter le cas" in case_page.text
    assert set(ACTIVITIES) == {kind.value for kind in ActivityKind}, "every activity the portal offers, in French"
    assert paris_time((now - timedelta(hours=2)).isoformat()) in case_page.text


def test_a_report_of_the_units_territory_in_another_units_case_is_listed_apart(desk_settings: Settings) -> None:
    now = datetime.now(UTC)
    link = case_linked(CHAMONIX, PARIS_11, "limite", now - timedelta(minutes=5), "route des Praz")
    store = store_with(desk_settings, CHAMONIX.unit_id, [case_opened(CHAMONIX, "gare", now, "place de la gare"), link])
    # applied once by its event id, and never a case of this unit's
    with store.transaction() as writer:
        assert writer.apply(_decoded(link)).value == "duplicate"
    assert store.count("linked_reports") == 1 and [c.place for c in store.list_cases()] == [
        "place de la gare, Chamonix-Mont-Blanc"]
    store.close()
    store_with(desk_settings, PARIS_11.unit_id, [case_opened(PARIS_11, "limite", now - timedelta(hours=1))]).close()
    client = desk_client(desk_settings, [CHAMONIX.unit_id, PARIS_11.unit_id])

    page = client.get(f"/unites/{CHAMONIX.unit_id}").text
    section = page[page.index('id="rattaches"'):]
    [row] = re.findall(r'<tr data-cas="([^"]+)" data-signalement="[^"]+">\s*<td>([^<]+)<br>.*?<td>([^<]+)</td>',
                       section, re.S)
    assert row == (link.payload.case_id, "route des Praz, Chamonix-Mont-Blanc", PARIS_11.unit_id)
    assert "rattachés au cas d'une autre unité" in page
    # the owner's desk has the case, and no such section
    owner = client.get(f"/unites/{PARIS_11.unit_id}").text
    assert f'data-cas="{link.payload.case_id}"' in owner and 'id="rattaches"' not in owner


def test_the_desk_asks_an_officer_to_log_in_and_opens_only_their_units(desk_settings: Settings) -> None:
    store_with(desk_settings, PARIS_11.unit_id, [case_opened(PARIS_11, "hall")]).close()
    store_with(desk_settings, CHAMONIX.unit_id, [case_opened(CHAMONIX, "gare")]).close()
    served = [PARIS_11.unit_id, CHAMONIX.unit_id]
    path = desk_settings.desk_officers_path
    password = add_officer(path, "brigadier.martin", [CHAMONIX.unit_id])
    assert password not in path.read_text(encoding="utf-8") and oct(path.stat().st_mode & 0o777) == "0o600"
    client = TestClient(create_desk_app(desk_settings, served, NAMES))
    case_id = case_opened(PARIS_11, "hall").payload.case_id

    # Without a session: the pages lead to the login, the polled list and the handling answer 401, nothing leaks.
    first = client.get(f"/unites/{CHAMONIX.unit_id}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == f"/connexion?suite=/unites/{CHAMONIX.unit_id}"
    assert client.get("/", follow_redirects=False).headers["location"] == "/connexion"
    assert client.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 401
    forged = client.post(f"/unites/{PARIS_11.unit_id}/cas/{case_id}/traitement",
                         data={"issue": "dismantled", "confirme": "oui"})
    assert forged.status_code == 401 and "hall" not in forged.text
    login_page = client.get(first.headers["location"])
    assert 'name="mot_de_passe"' in login_page.text and 'lang="fr"' in login_page.text

    # A wrong password, or an unknown login, is one same refusal.
    for login, attempt in (("brigadier.martin", "mauvais"), ("inconnu", password)):
        refused = client.post("/connexion", data={"identifiant": login, "mot_de_passe": attempt},
                              follow_redirects=False)
        assert refused.status_code == 401 and "Identifiant ou mot de passe incorrect" in refused.text
        assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")

    # Logged in: back where they were going (never to another site), with a cookie no script or other site carries.
    for suite, lands in ((f"/unites/{CHAMONIX.unit_id}", f"/unites/{CHAMONIX.unit_id}"),
                         ("//ailleurs.example/piege", "/"), ("https://ailleurs.example/", "/")):
        logged = client.post("/connexion", data={"identifiant": "Brigadier.Martin", "mot_de_passe": password,
                                                 "suite": suite}, follow_redirects=False)
        assert logged.status_code == 303 and logged.headers["location"] == lands
    cookie = logged.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie
    home = client.get("/")
    assert f'href="/unites/{CHAMONIX.unit_id}"' in home.text and f'href="/unites/{PARIS_11.unit_id}"' not in home.text
    assert "brigadier.martin" in home.text
    assert client.get(f"/unites/{CHAMONIX.unit_id}").status_code == 200
    # Another unit's desk, its cases and its handling are refused to this officer.
    assert client.get(f"/unites/{PARIS_11.unit_id}").status_code == 403
    assert client.get(f"/unites/{PARIS_11.unit_id}/cas/{case_id}").status_code == 403
    assert client.post(f"/unites/{PARIS_11.unit_id}/cas/{case_id}/traitement",
                       data={"issue": "dismantled", "confirme": "oui"}).status_code == 403
    store = CaseStore.open(store_url_for(None, desk_settings.unit_store_dir, PARIS_11.unit_id), PARIS_11.unit_id)
    assert store.get_case(case_id).status == "open"
    store.close()
    # A tampered cookie is no session.
    tampered = TestClient(client.app, cookies={SESSION_COOKIE: client.cookies[SESSION_COOKIE][:-4] + "AAAA"})
    assert tampered.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 401

    # Revoked: the session ends at the next request; logged out: the same.
    again = client.post("/connexion", data={"identifiant": "brigadier.martin", "mot_de_passe": password},
                        follow_redirects=False)
    assert again.status_code == 303
    assert client.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 200
    assert client.post("/deconnexion", follow_redirects=False).headers["location"] == "/connexion"
    assert client.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 401
    client.post("/connexion", data={"identifiant": "brigadier.martin", "mot_de_passe": password})
    assert client.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 200
    assert revoke_officer(path, "brigadier.martin")
    assert client.get(f"/unites/{CHAMONIX.unit_id}/liste").status_code == 401


def test_a_session_lasts_a_shift_and_no_longer(desk_settings: Settings) -> None:
    from cryptography.fernet import Fernet

    from consumers.desk_officers import DeskSessions

    key = Fernet.generate_key()
    sessions = DeskSessions(key, max_age_s=3600)
    token = sessions.issue("brigadier.martin")
    assert sessions.login_of(token) == "brigadier.martin"
    assert DeskSessions(Fernet.generate_key(), 3600).login_of(token) is None, "another desk key"
    stale = Fernet(key).encrypt_at_time(b'{"login": "brigadier.martin"}', current_time=int(time.time()) - 3601)
    assert sessions.login_of(stale.decode()) is None
    assert sessions.login_of("") is None and sessions.login_of("pas-un-jeton") is None


def test_handling_asks_for_a_confirmation_first(desk_settings: Settings) -> None:
    store_with(desk_settings, PARIS_11.unit_id, [case_opened(PARIS_11, "hall")]).close()
    client = desk_client(desk_settings, [PARIS_11.unit_id])
    case_id = case_opened(PARIS_11, "hall").payload.case_id
    answer = client.post(f"/unites/{PARIS_11.unit_id}/cas/{case_id}/traitement", data={"issue": "dismantled"})
    assert answer.status_code == 200 and "Confirmer" in answer.text and "démantelé" in answer.text
    store = CaseStore.open(store_url_for(None, desk_settings.unit_store_dir, PARIS_11.unit_id), PARIS_11.unit_id)
    assert store.get_case(case_id).status == "open"  # nothing published before the confirmation
    refused = client.post(f"/unites/{PARIS_11.unit_id}/cas/{case_id}/traitement", data={"issue": "lost"})
    assert refused.status_code == 400


def test_the_map_keeps_every_case_inside_and_sizes_it_by_reports() -> None:
    from consumers.case_store import CaseSummary

    def summary(case_id: str, lat: float, lon: float, reports: int) -> CaseSummary:
        return CaseSummary(unit_id="u", case_id=case_id, kind="dealing_point", status="open", case_version=1,
                           report_count=reports, commune_code="75111", commune_name="Paris", departement="75",
                           force="PN", opened_at="", first_seen="", last_seen="", latitude=lat, longitude=lon)

    points = case_map([summary("a", 48.85, 2.35, 1), summary("b", 48.87, 2.39, 9), summary("c", 48.86, 2.37, 4)])
    assert all(0 <= p.x <= 640 and 0 <= p.y <= 420 for p in points)
    north = max(points, key=lambda p: -p.y)
    assert north.case_id == "b" and north.radius > min(p.radius for p in points)


def test_a_store_of_version_1_gets_the_place_of_each_case(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        assert migrate(connection, MIGRATIONS[:1]) == [1]
    engine.dispose()
    store = CaseStore.open(url, PARIS_11.unit_id)  # migrates to the latest version
    with store.transaction() as writer:  # a case written as version 1 would have: no place columns set
        writer.apply(_decoded(case_opened(PARIS_11, "vieux", street="1 rue haxo", position=(48.87, 2.40))))
    with store.engine.begin() as connection:
        connection.execute(cases.update().values(place=None, latitude=None, longitude=None))
        connection.execute(select(cases.c.case_id))
        from consumers.store_schema import _add_case_place, schema_migrations

        connection.execute(schema_migrations.delete().where(schema_migrations.c.version == 2))
        for name in ("place", "latitude", "longitude"):
            connection.exec_driver_sql(f"ALTER TABLE cases DROP COLUMN {name}")
        _add_case_place(connection)
    [case] = store.list_cases()
    assert (case.place, case.latitude, case.longitude) == ("1 rue haxo, Paris 11e Arrondissement", 48.87, 2.40)


def test_the_terminal_list_fits_80_columns_place_first_with_a_short_reference(desk_settings: Settings) -> None:
    from rich.console import Console

    from consumers.case_desk import SHORT_REFERENCE, render_case_list

    store = store_with(desk_settings, PARIS_11.unit_id, [
        case_opened(PARIS_11, "long", street="148 boulevard de menilmontant escalier b", position=(48.86, 2.38))])
    console = Console(width=80, record=True, color_system=None)
    render_case_list(console, store.list_cases())
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    [case] = store.list_cases()
    reference = case.case_id[:SHORT_REFERENCE]
    row = next(line for line in lines if reference in line)
    assert row.index(reference) < row.index("148")  # the reference, then the place
    assert store.resolve_reference(reference) == case.case_id
    assert store.resolve_reference("zz") is None


def test_the_map_draws_the_units_communes_from_the_shipped_boundaries_with_its_cases_on_them(
    desk_settings: Settings,
) -> None:
    from streams.jurisdiction import JurisdictionReference

    reference = JurisdictionReference.from_settings(desk_settings)
    units = [PARIS_11.unit_id, CHAMONIX.unit_id, "cross-74"]
    territories = UnitTerritories(reference, units)
    store_with(desk_settings, CHAMONIX.unit_id, [
        case_opened(CHAMONIX, "gare", datetime.now(UTC), "place de la gare", (45.9237, 6.8694)),
    ]).close()
    client = desk_client(desk_settings, units, territories)

    page = client.get(f"/unites/{CHAMONIX.unit_id}").text
    expected = {c.code for c in reference.communes if c.unit_id == CHAMONIX.unit_id}
    drawn = set(re.findall(r'<path d="M[^"]+" data-commune="(\d[\dAB]\d{3})">', page))
    assert drawn == expected and "74056" in drawn
    # the case's point lies inside the frame the communes are drawn in
    [(x, y)] = [(float(a), float(b)) for a, b in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', page)]
    assert 0 < x < 640 and 0 < y < 420
    # a CROSS sees its whole département
    cross = client.get("/unites/cross-74").text
    assert len(re.findall(r'data-commune="74\d{3}"', cross)) == len({c.code for c in reference.communes
                                                                   if c.departement == "74"})
    assert "https://" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]  # nothing fetched from outside
