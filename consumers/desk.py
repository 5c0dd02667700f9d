"""The units' desk: web pages, in French, for the officers of the units this service serves.

For each unit: its cases (newest activity first, sortable, filtered by kind, status and commune), the counts at
the top, a map of the unit's communes (from the commune boundaries) and of its cases, drawn as plain SVG (no tile
server: the page works on a closed network), a page per case (where, what, when, each report, the network's number or handle, the reporter's contact
where one was kept), and the handling of a case (dismantled, unfounded, transferred to another unit), published
on the unit's queue exactly as ``signalements cases handle`` does, after a confirmation. The list refreshes itself
(the page polls a fragment) when new cases arrive.

It reads the unit consumers' case store (SQLite per unit, or the shared PostgreSQL). Every page but the login asks
for an officer's session (consumers/desk_officers.py); an officer opens the desk of the units of their account only
(another unit's pages answer 403), and the desk publishes a unit's handling as that unit's Kafka principal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from consumers.case_desk import CaseDeskError, handle_case
from consumers.case_store import CaseCounts, CaseSort, CaseStore, CaseSummary, store_url_for
from consumers.desk_officers import DeskOfficers, DeskSessions, OfficerAccount, load_session_key
from consumers.paris_time import PARIS, paris_time
from consumers.unit_territory import MapFrame, UnitTerritories
from schemas.channels import Force
from schemas.events import CaseOutcome
from signalements.reporter_sealing import ContactOpener
from signalements.settings import Settings

HERE = Path(__file__).parent
PAGE_SIZE = 200
MAP_POINTS = 1000  # the most recently active cases drawn on the map (thousands of circles slow every browser)
KINDS = {"dealing_point": "point de deal", "delivery_network": "réseau de livraison"}
STATUSES = {"open": "ouvert", "dismantled": "démantelé", "unfounded": "infondé", "transferred": "transféré"}
OUTCOMES = {CaseOutcome.DISMANTLED: "démantelé", CaseOutcome.UNFOUNDED: "infondé", CaseOutcome.TRANSFERRED: "transféré"}
CHANNELS = {"moncommissariat": "moncommissariat", "brigade-numerique": "Ma brigade numérique"}
SORTS = {"activite": "dernière activité", "signalements": "nombre de signalements", "nature": "nature"}
# What the citizen saw, as the portal's drop-down says it in French (schemas.submissions.ActivityKind).
ACTIVITIES = {"street_sales": "vente de rue", "stash": "lieu de stockage",
              "new_spot_after_operation": "nouveau point après une opération", "home_delivery": "livraison à domicile",
              "other": "autre"}
SESSION_COOKIE = "bureau_session"


def local_path(target: str) -> str:
    """Where to go after the login: a path of this desk only (never another site, "//host" included)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@dataclass(frozen=True)
class MapPoint:
    case_id: str
    x: float
    y: float
    radius: float
    label: str


def map_frame(cases: list[CaseSummary], territory: tuple[float, float, float, float] | None = None) -> MapFrame | None:
    """The frame of the map: the unit's territory and every case with a position (a transferred case may lie
    outside the territory); None when there is nothing to draw."""
    boxes = [territory] if territory else []
    located = [(case.latitude, case.longitude) for case in cases if case.latitude is not None and case.longitude is not None]
    if located:
        lats, lons = [lat for lat, _ in located], [lon for _, lon in located]
        boxes.append((min(lons), min(lats), max(lons), max(lats)))
    if not boxes:
        return None
    return MapFrame.around(min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                           max(b[3] for b in boxes))


def case_map(cases: list[CaseSummary], frame: MapFrame | None = None) -> list[MapPoint]:
    """The cases with a position, projected in the frame (by default, around them), each a circle whose area grows
    with its report count."""
    frame = frame or map_frame(cases)
    if frame is None:
        return []
    points = []
    for case in cases:
        if case.latitude is None or case.longitude is None:
            continue
        x, y = frame.project(case.latitude, case.longitude)
        label = f"{case.place or case.commune_name} : {case.report_count} signalement(s)"
        radius = 4 + 2.5 * math.sqrt(case.report_count)
        points.append(MapPoint(case.case_id, x, y, round(radius, 1), label))
    return points


def select_cases(cases: list[CaseSummary], kind: str, commune: str, sort: str) -> list[CaseSummary]:
    chosen = [case for case in cases if (not kind or case.kind == kind) and (not commune or case.commune_code == commune)]
    if sort == "signalements":
        return sorted(chosen, key=lambda case: (-case.report_count, case.last_seen), reverse=False)
    if sort == "nature":
        return sorted(chosen, key=lambda case: (case.kind, case.last_seen), reverse=False)
    return sorted(chosen, key=lambda case: case.last_seen, reverse=True)


class DeskStores:
    """One case store per unit served, opened once."""

    def __init__(self, settings: Settings, unit_ids: list[str]) -> None:
        self.settings = settings
        self.stores = {
            unit_id: CaseStore.open(store_url_for(settings.consumer_database_url, settings.unit_store_dir, unit_id), unit_id)
            for unit_id in unit_ids
        }

    def of(self, unit_id: str) -> CaseStore | None:
        return self.stores.get(unit_id)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


class UnitDesk:
    """The pages of the units this desk serves; a unit not served, or a case not in the unit's store, is a 404."""

    def __init__(self, settings: Settings, unit_ids: list[str], unit_names: dict[str, str],
                 territories: UnitTerritories | None = None) -> None:
        self.settings = settings
        self.unit_ids = unit_ids
        self.unit_names = unit_names
        self.territories = territories
        self.stores = DeskStores(settings, unit_ids)
        self.officers = DeskOfficers(settings.desk_officers_path)
        self.sessions = DeskSessions(load_session_key(settings.desk_session_key_path),
                                     max_age_s=int(settings.desk_session_hours * 3600))
        # The private keys this desk holds (its units' forces'): a contact is shown only where one opens it.
        self.openers = {force: ContactOpener.load(settings.reporter_keys_path, force) for force in Force}
        self.templates = Jinja2Templates(directory=HERE / "desk_templates")
        self.templates.env.filters["paris"] = paris_time
        self.templates.env.globals.update(KINDS=KINDS, STATUSES=STATUSES, OUTCOMES=OUTCOMES, CHANNELS=CHANNELS,
                                          SORTS=SORTS, ACTIVITIES=ACTIVITIES)

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(
            request, name, {"unit_names": self.unit_names, "officer": self.officer_of(request), **context},
            status_code=status_code)

    def officer_of(self, request: Request) -> OfficerAccount | None:
        """The officer of the request's session, as the accounts file holds them now (None once revoked); read once
        per request (the access check, then the page's banner)."""
        if not hasattr(request.state, "officer"):
            login = self.sessions.login_of(request.cookies.get(SESSION_COOKIE))
            request.state.officer = self.officers.current(login) if login else None
        officer: OfficerAccount | None = request.state.officer
        return officer

    def refusal(self, request: Request, unit_id: str | None, fragment: bool = False) -> Response | None:
        """None when the request's officer may open ``unit_id``'s desk (or, without a unit, any page); else the
        answer: the login page (401 for the list the page polls), or 403 for another unit."""
        officer = self.officer_of(request)
        if officer is None:
            if fragment or request.method != "GET":
                return Response("connexion requise", status_code=401, media_type="text/plain; charset=utf-8")
            return RedirectResponse(f"/connexion?suite={quote(request.url.path)}", status_code=303)
        if unit_id is not None and unit_id not in officer.unit_ids:
            return self.absent(request, "Accès refusé",
                               f"Votre compte ne donne pas accès au bureau de l'unité « {unit_id} ».", 403)
        return None

    def login(self, request: Request, login: str, password: str, after: str) -> Response:
        officer = self.officers.authenticate(login.strip().lower(), password)
        if officer is None:
            return self.page(request, "login.html", 401, title="Connexion", suite=after,
                             error="Identifiant ou mot de passe incorrect.")
        response = RedirectResponse(local_path(after), status_code=303)
        response.set_cookie(SESSION_COOKIE, self.sessions.issue(officer.login), max_age=self.sessions.max_age_s,
                            httponly=True, samesite="strict", secure=self.settings.desk_secure_cookie, path="/")
        return response

    def served_units_of(self, officer: OfficerAccount) -> list[str]:
        return [unit_id for unit_id in self.unit_ids if unit_id in officer.unit_ids]

    def absent(self, request: Request, title: str, message: str, status_code: int = 404) -> HTMLResponse:
        return self.page(request, "absent.html", status_code, title=title, message=message)

    def name_of(self, unit_id: str) -> str:
        return self.unit_names.get(unit_id, unit_id)

    def store_of(self, request: Request, unit_id: str) -> CaseStore | HTMLResponse:
        store = self.stores.of(unit_id)
        if store is None:
            return self.absent(request, "Unité non servie", f"L'unité « {unit_id} » n'est pas servie par ce poste.")
        return store

    def desk(self, request: Request, unit_id: str, filters: DeskFilters, fragment: bool = False) -> HTMLResponse:
        store = self.store_of(request, unit_id)
        if isinstance(store, HTMLResponse):
            return store
        now = datetime.now(UTC)
        month_start = now.astimezone(PARIS).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        counts: CaseCounts = store.counts(new_since=now - timedelta(days=1), handled_since=month_start)
        everything = store.list_cases(sort=CaseSort.LAST_SEEN, status=None if filters.status == "tous" else filters.status)
        shown = select_cases(everything, filters.kind, filters.commune, filters.sort)
        mapped = sorted(shown, key=lambda case: case.last_seen, reverse=True)[:MAP_POINTS]
        territory = self.territories.bounds(unit_id) if self.territories else None
        frame = map_frame(mapped, territory)
        context: dict[str, Any] = {
            "unit_id": unit_id, "counts": counts, "cases": shown[:PAGE_SIZE], "total": len(shown),
            "points": case_map(mapped, frame),
            "outlines": self.territories.outlines(unit_id, frame) if self.territories and frame else [],
            "map_capped": len(shown) > MAP_POINTS, "filters": filters, "updated_at": paris_time(now),
            "linked": store.linked(),
            "communes": sorted({(case.commune_code, case.commune_name) for case in everything}, key=lambda c: c[1]),
        }
        if fragment:
            return self.page(request, "desk_content.html", **context)
        return self.page(request, "desk.html", title=f"Cas de l'unité {self.name_of(unit_id)}", **context)

    def case(self, request: Request, unit_id: str, case_id: str, message: str = "", error: str = "",
             status_code: int = 200) -> HTMLResponse:
        store = self.store_of(request, unit_id)
        if isinstance(store, HTMLResponse):
            return store
        case = store.get_case(case_id)
        if case is None:  # another unit's case is not in this unit's store: it does not exist here
            return self.absent(request, "Cas introuvable", f"Aucun cas « {case_id} » dans l'unité {self.name_of(unit_id)}.")
        opener = self.openers[Force(case.force)]
        contacts = {enriched.report.report_id: contact for enriched in case.reports
                    if (contact := opener.open(enriched.report.reporter)) is not None}
        return self.page(request, "case.html", status_code, title=f"Cas {case_id[:8]}", unit_id=unit_id, case=case,
                         message=message, error=error, points=case_map([case]), contacts=contacts,
                         transfer_units=sorted(self.unit_names.items()))

    def handle(self, request: Request, unit_id: str, case_id: str, outcome: str, to: str, confirmed: bool) -> Response:
        """First a confirmation page; once confirmed, published as ``cases handle`` does, then back to the case."""
        store = self.store_of(request, unit_id)
        if isinstance(store, HTMLResponse):
            return store
        case = store.get_case(case_id)
        if case is None:
            return self.absent(request, "Cas introuvable", f"Aucun cas « {case_id} » dans l'unité {self.name_of(unit_id)}.")
        try:
            chosen = CaseOutcome(outcome)
        except ValueError:
            return self.absent(request, "Traitement inconnu", f"« {outcome} » n'est pas un traitement.", 400)
        target = to.strip() if chosen is CaseOutcome.TRANSFERRED else ""
        if not confirmed:
            return self.page(request, "confirm.html", title="Confirmer le traitement", unit_id=unit_id, case=case,
                             outcome=chosen, to=target)
        try:
            handle_case(self.settings, store, case_id, chosen, target or None)
        except CaseDeskError as error:
            return self.case(request, unit_id, case_id, error=str(error), status_code=409)
        return RedirectResponse(f"/unites/{unit_id}/cas/{case_id}?message=traitement-publie", status_code=303)


@dataclass(frozen=True)
class DeskFilters:
    kind: str = ""
    status: str = "open"
    commune: str = ""
    sort: str = "activite"

    @property
    def query(self) -> str:
        return f"nature={self.kind}&statut={self.status}&commune={self.commune}&tri={self.sort}"


def desk_filters(nature: str = "", statut: str = "open", commune: str = "", tri: str = "activite") -> DeskFilters:
    """The list's filters as the page's form sends them (French parameter names)."""
    return DeskFilters(kind=nature, status=statut, commune=commune, sort=tri)


Filters = Annotated[DeskFilters, Depends(desk_filters)]


def create_desk_app(settings: Settings, unit_ids: list[str], unit_names: dict[str, str],
                    territories: UnitTerritories | None = None) -> FastAPI:
    desk = UnitDesk(settings, unit_ids, unit_names, territories)
    app = FastAPI(title="Bureau des unités", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "desk_static"), name="static")
    app.router.add_event_handler("shutdown", desk.stores.close)

    @app.get("/connexion", response_class=HTMLResponse)
    def login_page(request: Request, suite: str = "/") -> HTMLResponse:
        return desk.page(request, "login.html", title="Connexion", suite=local_path(suite), error="")

    @app.post("/connexion", response_class=HTMLResponse)
    def login(request: Request, identifiant: Annotated[str, Form()], mot_de_passe: Annotated[str, Form()],
              suite: Annotated[str, Form()] = "/") -> Response:
        return desk.login(request, identifiant, mot_de_passe, suite)

    @app.post("/deconnexion")
    def logout() -> Response:
        response = RedirectResponse("/connexion", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def units(request: Request) -> Response:
        officer = desk.officer_of(request)
        if officer is None:
            return RedirectResponse("/connexion", status_code=303)
        return desk.page(request, "units.html", title="Bureau des unités", unit_ids=desk.served_units_of(officer))

    @app.get("/unites/{unit_id}", response_class=HTMLResponse)
    def unit_desk(request: Request, unit_id: str, filters: Filters) -> Response:
        return desk.refusal(request, unit_id) or desk.desk(request, unit_id, filters)

    @app.get("/unites/{unit_id}/liste", response_class=HTMLResponse)
    def unit_desk_content(request: Request, unit_id: str, filters: Filters) -> Response:
        """The counts, the map and the list alone: what the page fetches to update itself without a reload."""
        return desk.refusal(request, unit_id, fragment=True) or desk.desk(request, unit_id, filters, fragment=True)

    @app.get("/unites/{unit_id}/cas/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, unit_id: str, case_id: str, message: str = "") -> Response:
        return desk.refusal(request, unit_id) or desk.case(request, unit_id, case_id, message=message)

    @app.post("/unites/{unit_id}/cas/{case_id}/traitement", response_class=HTMLResponse)
    def handle(request: Request, unit_id: str, case_id: str, issue: Annotated[str, Form()],
               vers: Annotated[str, Form()] = "", confirme: Annotated[str, Form()] = "") -> Response:
        return desk.refusal(request, unit_id) or desk.handle(request, unit_id, case_id, issue, vers, confirme == "oui")

    return app


def run_desk(settings: Settings, unit_ids: list[str], unit_names: dict[str, str],
             territories: UnitTerritories | None = None) -> None:
    import uvicorn

    app = create_desk_app(settings, unit_ids, unit_names, territories)
    uvicorn.run(app, host=settings.desk_host, port=settings.desk_port, log_level="warning")
