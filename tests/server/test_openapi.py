"""The OpenAPI document says what the server does (issue 8, item 9)."""

from __future__ import annotations

from .helpers import create_project


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_patch_of_a_not_null_field_is_documented_as_not_nullable(client, alice):
    document = client.get("/openapi.json").json()
    name = document["components"]["schemas"]["ProjectUpdate"]["properties"]["name"]
    project = create_project(client, alice)

    nulled = client.patch(f"/projects/{project['id']}", json={"name": None}, headers=alice.headers)
    left_out = client.patch(f"/projects/{project['id']}", json={"description": None}, headers=alice.headers)

    assert name.get("type") == "string" and "anyOf" not in name and "default" not in name
    assert nulled.status_code == 422
    assert left_out.status_code == 200 and left_out.json()["name"] == project["name"]


def test_every_operation_declares_its_errors_with_the_error_body(client):
    document = client.get("/openapi.json").json()

    for path, method, operation in operations(document):
        responses = operation["responses"]
        if operation.get("security"):
            assert "401" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "application/json" in response.get("content", {}):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    auth = document["paths"]["/auth/login"]["post"]["responses"]
    assert {"401", "429", "503"} <= set(auth)


def test_the_upload_schema_forbids_other_parts(client):
    upload = client.get("/openapi.json").json()["paths"]["/projects/{project_id}/assets"]["post"]

    schema = upload["requestBody"]["content"]["multipart/form-data"]["schema"]

    assert schema["additionalProperties"] is False and set(schema["properties"]) == {"file", "task_id"}


def test_blank_names_are_refused_as_the_schema_says(client, alice):
    answers = [client.post("/projects", json={"name": name}, headers=alice.headers) for name in ("   ", "\t\n", "ok\x00")]

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert client.post("/projects", json={"name": "  padded  "}, headers=alice.headers).json()["name"] == "padded"
