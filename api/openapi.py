"""What the OpenAPI document states beyond what FastAPI infers, in one place, so that it lists every status code a
route can answer and every limit a valid request must keep (a fuzzer that trusts the document gets no refusals
it could not have predicted):

- every keyed route: 401 (no or bad key) and 429 (over the rate limit);
- every route with a body: 400 (malformed JSON), 413 (over the size limit), 415 (wrong content type), 422;
- every route with parameters: 422;
- every route that reads the database (all but /health): 503 while it cannot be reached;
- every integer a request carries (path, query or body): at most 2^63 - 1, what the database stores;
- the server's own limits (rows per request, characters per text) on the request models that they bound;
- training arguments with their types, choices and bounds (``services.limits``) instead of a free-form object.
"""
from __future__ import annotations

from typing import Any

from localize.api.errors import problem_responses
from localize.services.limits import base_depth, training_request_schema
from localize.validation import MAX_DB_INT
from localize.settings import Settings

# Routes whose body is training arguments: read as a dict (the service checks it), stated precisely here.
TRAINING_ROUTES = ("/tasks/{task}/users/{user}/jobs", "/tasks/{task}/prior/jobs", "/tasks/{task}/jobs/stale")


# Every other route reads the database, which may be unreachable for a moment (503 with Retry-After).
DATABASE_FREE_PATHS = frozenset({"/health"})


def _problems(operation: dict[str, Any], *statuses: int) -> None:
    responses = operation.setdefault("responses", {})
    for status, entry in problem_responses(*statuses).items():
        responses.setdefault(str(status), entry)


def _limit(components: dict[str, Any], model: str, field: str, **limits: Any) -> None:
    """Sets JSON-schema keywords on ``model.field`` (``items_*`` ones on its items), if the model is there."""
    schema = components.get(model, {}).get("properties", {}).get(field)
    if schema is None:
        return
    for variant in schema.get("anyOf", [schema]):  # an optional field: the non-null variant
        if variant.get("type") == "null":
            continue
        for keyword, value in limits.items():
            if keyword.startswith("items_"):
                variant.setdefault("items", {})[keyword.removeprefix("items_")] = value
            else:
                variant[keyword] = value


def _bound_integers(schema: Any) -> None:
    """Every integer in ``schema`` without a maximum gets the database's (a route that forgets its bound answers a
    larger one with 422 all the same: see ``api.errors``)."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            schema.setdefault("maximum", MAX_DB_INT)
        for value in schema.values():
            _bound_integers(value)
    elif isinstance(schema, list):
        for value in schema:
            _bound_integers(value)


def complete(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if path not in DATABASE_FREE_PATHS:
                _problems(operation, 503)
            if operation.get("security"):
                _problems(operation, 401, 429)
            if "requestBody" in operation:
                _problems(operation, 400, 413, 415, 422)
            if operation.get("parameters"):
                _problems(operation, 422)
            for parameter in operation.get("parameters", []):
                _bound_integers(parameter.get("schema", {}))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["TrainingRequest"] = training_request_schema(default_method=settings.default_method,
                                                            num_layers=base_depth(settings.base_model))
    for name, model in components.items():
        if not name.endswith(("Public", "Publics", "Status")) and name != "Problem":  # requests, not answers
            _bound_integers(model)
    for path in TRAINING_ROUTES:
        media = schema["paths"].get(path, {}).get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in media:
            media["application/json"]["schema"] = {"$ref": "#/components/schemas/TrainingRequest"}
    rows, chars = settings.max_batch_rows, settings.max_text_chars
    _limit(components, "PredictRequest", "texts", minItems=1, maxItems=rows, items_maxLength=chars)
    _limit(components, "MixedPredictRequest", "rows", minItems=1, maxItems=rows)
    _limit(components, "PredictionRow", "text", maxLength=chars)
    _limit(components, "FanoutRequest", "text", maxLength=chars)
    _limit(components, "FanoutRequest", "users", maxItems=rows)
    for upload, row in (("LabelsUpload", "UserLabelIn"), ("BulkLabelsUpload", "BulkLabelIn")):
        _limit(components, upload, "labels", minItems=1, maxItems=rows)
        _limit(components, row, "text", maxLength=chars)
    return schema
