"""The OpenAPI document: every route, an example for every operation, problem+json for every error."""
from __future__ import annotations

from fastapi.routing import APIRoute

from localize.api.app import ROUTERS


def _resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _has_example(media: dict, document: dict) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(media.get("schema", {}), document)
    if schema.get("type") == "array":
        schema = _resolve(schema.get("items", {}), document)
    return bool(schema.get("examples"))


def test_openapi_lists_every_route_with_examples(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "localize" and document["info"]["version"]
    operations = {(method.upper(), path): operation
                  for path, item in document["paths"].items() for method, operation in item.items()}
    served = {(method, route.path) for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)
              for method in route.methods}
    assert set(operations) == served and len(served) >= 26

    for (method, path), operation in operations.items():
        assert operation.get("description"), (method, path)  # the route's one-line docstring
        request = [media for media in operation.get("requestBody", {}).get("content", {}).values()]
        success = [media for status, answer in operation["responses"].items() if status.startswith("2")
                   for media in answer.get("content", {}).values()]
        assert any(_has_example(media, document) for media in request + success), (method, path)


def test_every_error_response_is_a_problem_document(client):
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["schemas"]["Problem"]["examples"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)


def test_every_keyed_route_declares_bearer_auth(client):
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            keyed = path not in ("/health", "/ready")
            assert bool(operation.get("security")) == keyed, (method, path)
            assert ("401" in operation["responses"]) == keyed, (method, path)


def test_upload_route_documents_every_body_type(client):
    operation = client.get("/openapi.json").json()["paths"]["/tasks/{task}/users/{user}/labels"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json", "application/jsonl", "application/x-ndjson", "text/csv", "multipart/form-data"}


def test_docs_page_is_served(client):
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()


def test_every_route_that_reads_the_database_lists_its_503(client):
    """An unreachable database answers 503 database-unavailable with Retry-After on any route that reads it."""
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert ("503" in operation["responses"]) == (path != "/health"), (method, path)
