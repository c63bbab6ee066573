"""The `Upload` scalar: a file part of a GraphQL multipart request, and nothing else.

Strawberry's own `Upload` passes any value through, so `{"file": "hello"}` in plain JSON
variables would reach a resolver as a string. Here only a file that the multipart request
mapped into the variables is accepted; anything else is a variable error
(`BAD_USER_INPUT`) before any resolver runs.
"""

from typing import Any

import strawberry
from django.core.files.uploadedfile import UploadedFile
from strawberry.file_uploads import Upload

NOT_A_FILE = (
    "Expected a file: send it as a part of a multipart request (the GraphQL multipart "
    "request spec, as apollo-upload-client and urql do), mapped to this variable."
)


def _parse_value(value: Any) -> UploadedFile:
    if isinstance(value, UploadedFile):
        return value
    raise ValueError(NOT_A_FILE)


def _serialize(value: Any) -> Any:
    raise ValueError("An upload is an input only.")


UploadScalar = strawberry.scalar(
    name="Upload",
    description=(
        "A file, sent as a part of a multipart request (the GraphQL multipart request "
        "spec): a variable mapped to a file part by the request's `map`."
    ),
    specified_by_url="https://github.com/jaydenseric/graphql-multipart-request-spec",
    serialize=_serialize,
    parse_value=_parse_value,
)

SCALAR_OVERRIDES = {Upload: UploadScalar}

__all__ = ["SCALAR_OVERRIDES", "Upload"]
