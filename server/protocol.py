"""The JSON-RPC side of the language server: pygls's protocol, with two fixes.

A request whose params do not fit the LSP schema is answered with an
`InvalidParams` error naming the fields that are wrong (pygls logs it and
drops it, which leaves the client waiting for ever), and positions are UTF-16
whatever encodings the client offers.
"""

from __future__ import annotations

import logging

from cattrs import ClassValidationError, transform_error
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, lsp_method

log = logging.getLogger(__name__)


class SelftuneProtocol(LanguageServerProtocol):
    """pygls's protocol, except that a request whose params do not fit the LSP schema is answered.

    pygls logs such a request and drops it, which leaves the client waiting for ever;
    here it gets an InvalidParams error naming the fields that are wrong.
    """

    def structure_message(self, data: dict):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if not (isinstance(data, dict) and "id" in data and "method" in data):
                raise
            cause = exc.__cause__
            detail = "; ".join(transform_error(cause)) if isinstance(cause, ClassValidationError) else str(cause or exc)
            message = f"invalid params for {data['method']}: {detail}"
            log.warning(message)
            self._send_response(data["id"], error=types.ResponseError(code=JsonRpcInvalidParams.CODE, message=message))
            return _ANSWERED

    def handle_message(self, message):
        if message is not _ANSWERED:
            super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        # Positions are UTF-16 throughout selftune, the encoding every client supports; pygls would
        # otherwise take the client's first preference (Neovim offers UTF-8 first).
        general = params.capabilities.general
        if general is not None and general.position_encodings:
            general.position_encodings = [types.PositionEncodingKind.Utf16]
        return (yield from super().lsp_initialize(params))


_ANSWERED = object()
