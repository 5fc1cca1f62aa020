"""GET /api/openapi.json describes exactly the API the gateway serves, as valid OpenAPI 3.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import openapi_spec_validator
import pytest
from pydantic import BaseModel

from mqttproxy.upstream.models import BrokerRecord, BrokerSettings
from mqttproxy.webapp.api import API_ROUTES, ROUTES, TokenRequest
from mqttproxy.webapp.registry_api import REGISTRY_ROUTES
from mqttproxy.webapp.shadow_api import SHADOW_ROUTES
from mqttproxy.webapp.timeseries_api import TIMESERIES_ROUTES
from tests.webapp.api_client import token_api, web_gateway, web_port

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@dataclass(frozen=True)
class Served:
    document: dict[str, Any]
    routes: set[tuple[str, str]]  # (METHOD, path) of the running app's /api routes
    statuses: dict[tuple[str, str], int]
    bodies: dict[tuple[str, str], type[BaseModel] | None]  # the request body model of every route


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The document as a client gets it, and the routes of the app that served it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
        with web_gateway(tmp_path_factory.mktemp("openapi")) as gateway:
            document = token_api(web_port(gateway)).ok("GET", "/api/openapi.json")
            assert gateway.gateway is not None
            assert gateway.gateway.web is not None
            app = gateway.gateway.web._runner.app
            assert app is not None
            routes = {
                (route.method, route.resource.canonical)
                for route in app.router.routes()
                if route.resource is not None
                and route.resource.canonical.startswith("/api")
                and route.method != "HEAD"
            }
            statuses = {(route.method, route.path): route.status for route in app[API_ROUTES]}
            bodies = {(route.method, route.path): route.body for route in app[API_ROUTES]}
            yield Served(document, routes, statuses, bodies)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in _METHODS:
                yield method.upper(), path, operation


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def test_paths_and_methods_are_exactly_the_api_routes(served: Served) -> None:
    documented = {(method, path) for method, path, _ in operations(served.document)}
    assert documented == served.routes
    for routes in (ROUTES, REGISTRY_ROUTES, SHADOW_ROUTES, TIMESERIES_ROUTES):
        assert {(route.method, route.path) for route in routes} <= documented
    assert ("GET", "/api/events") in documented
    assert ("GET", "/api/openapi.json") in documented


def test_every_operation_has_a_summary_and_responses(served: Served) -> None:
    operation_ids = []
    for method, path, operation in operations(served.document):
        assert isinstance(operation.get("summary"), str), (method, path)
        assert operation["summary"].strip(), (method, path)
        responses = operation.get("responses")
        assert responses, (method, path)
        assert str(served.statuses[(method, path)]) in responses, (method, path)
        assert "401" in responses, (method, path)
        for response in responses.values():
            assert response.get("description"), (method, path)
        operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))


def test_path_parameters_are_declared(served: Served) -> None:
    for method, path, operation in operations(served.document):
        names = re.findall(r"\{(\w+)\}", path)
        declared = {item["name"]: item for item in operation.get("parameters", []) if item["in"] == "path"}
        assert set(declared) == set(names), (method, path)
        assert all(item["required"] is True for item in declared.values()), (method, path)


def test_request_bodies_reference_existing_schemas(served: Served) -> None:
    schemas = served.document["components"]["schemas"]
    for method, path, operation in operations(served.document):
        model = served.bodies[(method, path)]
        if model is None:
            assert "requestBody" not in operation, (method, path)
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}, (method, path)
        assert "413" in operation["responses"], (method, path)
    for ref in refs(served.document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_schemas_match_the_models(served: Served) -> None:
    schemas = served.document["components"]["schemas"]
    for model in (BrokerRecord, BrokerSettings, TokenRequest):
        schema = schemas[model.__name__]
        assert set(schema["properties"]) == set(model.model_fields), model.__name__
    assert {"id", "name", "address"} <= set(schemas["BrokerRecord"]["required"])
    assert "id" not in schemas["BrokerSettings"]["properties"]
    password = schemas["BrokerSettings"]["properties"]["password"]
    assert any(option.get("writeOnly") for option in password.get("anyOf", [password]))


def test_every_request_body_refuses_unknown_fields(served: Served) -> None:
    """A typo in a field name is a 400 naming it, never silently a default; the document says so."""
    schemas = served.document["components"]["schemas"]
    for (method, path), model in served.bodies.items():
        if model is not None:
            assert schemas[model.__name__].get("additionalProperties") is False, (method, path)


def test_security_schemes_cover_bearer_and_session(served: Served) -> None:
    schemes = served.document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"]["in"] == "cookie"
    assert schemes["session"]["name"] == "mqttproxy_session"
    for method, path, operation in operations(served.document):
        names = {name for requirement in operation["security"] for name in requirement}
        assert names <= set(schemes), (method, path)


def test_error_responses_follow_the_error_schema(served: Served, tmp_path: Path) -> None:
    error_schema = served.document["components"]["schemas"]["Error"]
    with web_gateway(tmp_path) as gateway:
        api = token_api(web_port(gateway))
        for method, path, body in [
            ("POST", "/api/brokers", {"id": "x"}),
            ("GET", "/api/brokers/missing", None),
            ("DELETE", "/api/status", None),
            ("POST", "/api/tokens", {"name": "x" * 70_000}),
        ]:
            response = api.call(method, path, body) if body is not None else api.call(method, path)
            assert response.status >= 400
            jsonschema.validate(response.json(), error_schema)


def test_the_document_is_valid_openapi_3_1(served: Served) -> None:
    assert served.document["openapi"].startswith("3.1.")
    openapi_spec_validator.validate(served.document, cls=openapi_spec_validator.OpenAPIV31SpecValidator)
