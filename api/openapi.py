"""GET /api/v1/openapi.json: the API described in OpenAPI 3, built from the same tables the
search uses (fields, sort keys), so the document cannot drift from the code."""

from __future__ import annotations

import falcon

from archive_daemon.config import ApiConfig

from .calibrations import NIGHTS_MAX
from .facets import FACETS
from .params import ID_MAX
from .search import EXACT, FIELDS, SORTS


def _param(name: str, description: str, schema: dict | None = None, where: str = "query",
           required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(settings: ApiConfig) -> dict:
    file_id = _param("file_id", "the file's id", {"type": "integer", "minimum": 1, "maximum": ID_MAX}, "path", True)
    errors = {"400": _error("a parameter is wrong; the description names it"),
              "401": _error("the bearer token is unknown or revoked"),
              "404": _error("no such file, or not one the caller may read"),
              "503": _error("the database is unavailable")}
    busy = {"429": _error(f"the caller already has {settings.max_streams_per_client} downloads running"),
            "503": _error("the database is unavailable, or the server is sending all the downloads it can")}
    filter_params = [
        _param("ra", "cone centre: degrees, or sexagesimal hours (23h19m58.4s, 23:19:58.4, 23 19 58.4)"),
        _param("dec", "cone centre: degrees, or sexagesimal degrees (-05d09m56.171s, -05:09:56.171)"),
        _param("radius", f"cone radius: 30s, 2m, 0.5d, or bare degrees; at most {settings.max_radius_deg:g} degrees"),
        _param("start", "observation start at or after (ISO 8601; no zone: UTC)", {"type": "string", "format": "date-time"}),
        _param("end", "observation start before (ISO 8601)", {"type": "string", "format": "date-time"}),
        _param("night", "observing night", {"type": "string", "format": "date"}),
        _param("object", "object name, case-insensitive"),
        _param("object_match", "how `object` matches", {"type": "string", "enum": ["exact", "prefix", "contains"]}),
        *[_param(name, f"{name}, exact (case-insensitive)") for name in EXACT],
        _param("path", "path prefix within a root (a directory, or one file)"),
        _param("exptime_min", "shortest exposure, seconds", {"type": "number"}),
        _param("exptime_max", "longest exposure, seconds", {"type": "number"}),
    ]
    search_params = [
        *filter_params,
        _param("fields", f"comma-separated, from: {', '.join(FIELDS)}"),
        _param("sort", f"one of {', '.join(SORTS)}; '-' first for descending", {"type": "string", "enum": [
            *SORTS, *(f"-{s}" for s in SORTS)]}),
        _param("limit", "rows per page", {"type": "integer", "minimum": 1, "maximum": settings.max_limit}),
        _param("cursor", "the `next` link of the previous page carries it"),
        _param("count", f"only count: exact up to {settings.exact_count_limit} files, else an estimate "
                        "(`count_exact` false)", {"type": "boolean"}),
        _param("format", "else the Accept header decides", {"type": "string", "enum": ["json", "csv", "votable"]}),
    ]
    tar_request = {
        "type": "object", "additionalProperties": False, "properties": {
            "ids": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
                    "maxItems": settings.tar_max_files},
            "paths": {"type": "array", "items": {"type": "string", "description": "root/path"},
                      "maxItems": settings.tar_max_files},
            "gzip": {"type": "boolean"}},
        "x-max-bytes": settings.tar_max_bytes}  # the files' total size a request may ask for
    return {
        "openapi": "3.0.3",
        "info": {"title": "Observatory archive API", "version": "1",
                 "description": "Search, headers and downloads. Anonymous callers see public files; "
                                "`Authorization: Bearer <token>` identifies a user."},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"title": {"type": "string"},
                                                           "description": {"type": "string"}}},
                "File": {"type": "object", "properties": {name: {} for name in FIELDS}},
                "Facets": {"type": "object", "properties": {name: {"type": "array", "items": {
                    "type": "object", "properties": {"value": {"type": "string"}, "count": {"type": "integer"},
                                                     "count_exact": {"type": "boolean"}}}}
                    for name in FACETS}},
                "Page": {"type": "object", "required": ["count", "count_exact", "next", "results"], "properties": {
                    "count": {"type": "integer", "description": "every match, exactly when `count_exact`; else "
                              "an estimate, rounded to two significant figures"},
                    "count_exact": {"type": "boolean"}, "next": {"type": "string", "nullable": True},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}}},
            },
        },
        "security": [{}, {"token": []}],
        "paths": {
            "/api/v1/files": {"get": {
                "summary": "Search files", "parameters": search_params,
                "responses": {"200": {"description": "a page of results (JSON), or CSV, or a VOTable",
                                      "headers": {  # CSV and VOTable: the JSON envelope's count
                                          "X-Total-Count": {"schema": {"type": "integer"}},
                                          "X-Count-Exact": {"schema": {"type": "boolean"}}},
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                                                  "text/csv": {}, "application/x-votable+xml": {}}},
                              **errors}}},
            "/api/v1/files/{file_id}": {"get": {
                "summary": "All metadata of one file", "parameters": [file_id],
                "responses": {"200": {"description": "the file's metadata", "content": {"application/json": {}}},
                              **errors}}},
            "/api/v1/files/{file_id}/header": {"get": {
                "summary": "The FITS header", "parameters": [
                    file_id, _param("format", "80-column text or JSON cards", {"type": "string", "enum": ["text", "json"]})],
                "responses": {"200": {"description": "the header", "content": {"text/plain": {}, "application/json": {}}},
                              **errors}}},
            "/api/v1/files/{file_id}/preview": {"get": {
                "summary": "A quick-look PNG: an image's (a cube's first plane's) zscale, or a spectrum's line plot",
                "parameters": [
                    file_id,
                    _param("size", "the longer side in pixels", {"type": "integer", "minimum": 16,
                                                                 "maximum": settings.preview_max_size}),
                    _param("stretch", "how values map to grey", {"type": "string", "enum": ["asinh", "linear"]})],
                "responses": {"200": {"description": "the preview", "content": {"image/png": {}}},
                              "304": {"description": "unchanged since the ETag given"},
                              **errors}}},
            "/api/v1/files/{file_id}/download": {"get": {
                "summary": "The file itself (Range, ETag, If-None-Match supported)", "parameters": [
                    file_id,
                    _param("Range", "one byte range: bytes=first-last, bytes=first- or bytes=-length", where="header"),
                    _param("If-Range", "send the range only if the file still has this ETag or Last-Modified date",
                           where="header"),
                    _param("If-None-Match", "ETags (or *): 304 when the file still has one of them", where="header")],
                "responses": {"200": {"description": "the file"}, "206": {"description": "the range asked for"},
                              "304": {"description": "unchanged since the ETag given"},
                              "416": _error("a range outside the file, or not one range; the description says which"),
                              **errors, **busy}}},
            "/api/v1/download": {"post": {
                "summary": "Many files as one tar stream (gzip optional); MANIFEST.txt lists what was not sent",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": tar_request},
                    "application/x-www-form-urlencoded": {"schema": tar_request}}},
                "responses": {"200": {"description": "a tar (or tar.gz) stream"},
                              "413": _error(f"the body is over {settings.max_body_bytes} bytes"), **errors, **busy}}},
            "/api/v1/facets": {"get": {
                "summary": "Instrument, telescope, frame type and filter values with their counts, under the "
                           "search's parameters (each facet under all but its own)",
                "parameters": filter_params,
                "responses": {"200": {"description": "{facet: [{value, count}, ...]}", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Facets"}}}}, **errors}}},
            "/api/v1/calibrations": {"get": {
                "summary": "The calibration frames of the given files: same instrument, nights around "
                           "theirs, the same filter (flats) and binning",
                "parameters": [
                    _param("ids", "the files' ids, comma-separated", required=True),
                    _param("nights", "nights before and after each file's night",
                           {"type": "integer", "minimum": 0, "maximum": NIGHTS_MAX})],
                "responses": {"200": {"description": "{count, results: [file fields and `for`: the ids "
                                                     "they calibrate]}", "content": {"application/json": {}}},
                              **errors}}},
            "/api/v1/whoami": {"get": {
                "summary": "Who the API takes the caller for: user, programs, and by what (token or front end)",
                "responses": {"200": {"description": "the caller", "content": {"application/json": {}}},
                              "401": errors["401"], "503": errors["503"]}}},
            "/api/v1/health": {"get": {
                "summary": "Database reachable, schema current, daemon heartbeat age", "security": [{}],
                "responses": {"200": {"description": "healthy", "content": {"application/json": {}}},
                              "503": {"description": "not healthy", "content": {"application/json": {}}}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [{}],
                                             "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
    }


class OpenApi:
    def __init__(self, settings: ApiConfig):
        self.body = document(settings)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body
